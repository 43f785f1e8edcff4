#!/usr/bin/env python3
"""Bearer-token realm for the test registry (docker-registry `auth: token`).

Usage: token_server.py PORT_FILE KEY CERT ISSUER SERVICE LOG USER:PASSWORD...

Binds 127.0.0.1 on a free port and writes the port to PORT_FILE once it listens; over
TLS when TOKEN_TLS_CERT and TOKEN_TLS_KEY name a PEM certificate and key.
GET /token?service=S&scope=repository:NAME:ACTIONS with optional Basic credentials:
  * valid user      -> 200, a JWT granting the requested actions
  * no credentials  -> 200, a JWT granting nothing (the registry then answers 401)
  * wrong password  -> 401 {"details": "invalid username or password"}
POST /token (OAuth2 form), grant_type=refresh_token: the refresh token "<user>-refresh-token"
  stands for that user; any other -> 401 {"error": "invalid_grant"}.
The JWT is ES256 with the signing certificate in its x5c header, which is what
distribution 2.8 checks against `rootcertbundle`. Every issued token and every
request is appended to LOG, so tests can count token fetches and look for leaks.
"""
import base64
import json
import os
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

port_file, key_path, cert_path, issuer, service, log_path = sys.argv[1:7]
users = dict(u.split(":", 1) for u in sys.argv[7:])
with open(key_path, "rb") as f:
    key = serialization.load_pem_private_key(f.read(), password=None)
with open(cert_path, "rb") as f:
    cert_der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(claims):
    header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(cert_der).decode()]}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def log(line):
    with open(log_path, "a") as f:
        f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        if urlsplit(self.path).path != "/token":
            return self.reply(404, {"details": "not found"})
        length = int(self.headers.get("Content-Length", "0"))
        form = parse_qs(self.rfile.read(length).decode())
        refresh = form.get("refresh_token", [""])[0]
        subject = next((u for u in users if refresh == u + "-refresh-token"), "")
        if form.get("grant_type", [""])[0] != "refresh_token" or not subject:
            log("request denied")
            return self.reply(401, {"error": "invalid_grant", "error_description": "unknown refresh token"})
        self.grant(form, subject, "refresh ")

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path != "/token":
            return self.reply(404, {"details": "not found"})
        query = parse_qs(url.query)
        auth = self.headers.get("Authorization", "")
        subject = ""
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if users.get(user) != password:
                log("request denied")
                return self.reply(401, {"details": "invalid username or password"})
            subject = user
        self.grant(query, subject, "")

    def grant(self, query, subject, how):
        access = []
        for scope in query.get("scope", []):
            log("scope " + scope)
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if subject:
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        token = sign({"iss": issuer, "sub": subject, "aud": query.get("service", [service])[0],
                      "exp": now + 300, "nbf": now - 10, "iat": now,
                      "jti": secrets.token_hex(8), "access": access})
        log("request " + how + (subject or "anonymous"))
        log("token " + token)
        self.reply(200, {"token": token, "expires_in": 300})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if os.environ.get("TOKEN_TLS_CERT"):
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.environ["TOKEN_TLS_CERT"], os.environ["TOKEN_TLS_KEY"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
