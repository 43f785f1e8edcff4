#!/usr/bin/env python3
"""A TLS front for a notary-server that passes every request through, except that it
refuses every publish (POST) as notary-server refuses one that lost a race with another
writer. That fault, a publish refused after the trust data was read, is what a real server
cannot be made to produce on cue.

Usage: notary_front.py PORT_FILE CERT KEY UPSTREAM_HOST CA_FILE

Binds 127.0.0.1 on a free port, serves TLS with CERT/KEY, writes the port to PORT_FILE
once it listens, and talks TLS to UPSTREAM_HOST (host:port), trusting CA_FILE.
"""
import http.client
import os
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port_file, cert, key, upstream, ca = sys.argv[1:6]
upstream_tls = ssl.create_default_context(cafile=ca)
REFUSAL = b'{"errors":[{"code":"INVALID_UPDATE","message":"Update sent has invalid changes.","detail":"old version"}]}'


class Front(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, headers, body):
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def relay(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if self.command == "POST":
            return self.answer(400, [("Content-Type", "application/json")], REFUSAL)
        conn = http.client.HTTPSConnection(upstream, context=upstream_tls, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        self.answer(response.status, response.getheaders(), data)

    do_GET = do_HEAD = do_POST = relay


server = ThreadingHTTPServer(("127.0.0.1", 0), Front)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
