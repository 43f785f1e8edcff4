//! Notary v1 (Docker Content Trust) keys: the repository key that signs a role, its
//! canonical key id, and the check of the signatures other keys made.
//!
//! Follows notary (notaryproject/notary `tuf/data/keys.go`, `tuf/utils/x509.go`,
//! `tuf/utils/pkcs8.go`, `tuf/signed/verifiers.go`):
//!
//! - A private key is PEM: `ENCRYPTED PRIVATE KEY` (what `notary` and `docker trust` write:
//!   PKCS#8 under PBES2, PBKDF2-HMAC-SHA1 and AES-256-CBC, with `role:` and `gun:` headers),
//!   `PRIVATE KEY`, `EC PRIVATE KEY`, `RSA PRIVATE KEY` or notary's own `ED25519 PRIVATE KEY`.
//!   Notary's PKCS#8 is not quite standard, so it is read here field by field: an ECDSA key
//!   says version 1 but has no public key, an RSA key's algorithm has no NULL parameters,
//!   and an Ed25519 key is `1.3.6.1.4.1.11591.15.1` holding public ‖ seed ‖ public.
//! - A key id is the hex SHA-256 of the canonical JSON
//!   `{"keytype":T,"keyval":{"private":null,"public":B}}`, where `B` is the base64 of a DER
//!   `SubjectPublicKeyInfo` (`ecdsa`, `rsa`), of the 32 raw bytes (`ed25519`), or of a PEM
//!   certificate (`ecdsa-x509`, `rsa-x509`: root keys in `root.json`).
//! - Signatures: `ecdsa` is ECDSA P-256 over SHA-256, written as r ‖ s (64 bytes; DER is
//!   accepted too, as notary does); `eddsa` is Ed25519; `rsapss` is RSASSA-PSS with SHA-256,
//!   a 32-byte salt and a key of at least 2048 bits.
//!
//! No message here carries key material or a passphrase: the errors name what is wrong,
//! never the bytes.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use p256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};
use pkcs8::der::asn1::{AnyRef, ObjectIdentifier, OctetStringRef};
use pkcs8::der::{Decode as _, Encode as _, Reader as _};
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::signature::{Keypair as _, SignatureEncoding as _, Verifier as _};
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::secret::Secret;

/// `id-ecPublicKey`.
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `prime256v1`, the only curve notary generates.
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// `rsaEncryption`.
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-Ed25519` (RFC 8410).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// The Ed25519 OID notary writes into its PKCS#8 (`oidPublicKeyED25519`).
const OID_ED25519_NOTARY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11591.15.1");

/// The most PBKDF2 iterations a key may ask for (notary uses 2048, OpenSSL 2048): past
/// this, a key would hold the process for minutes.
pub const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// The smallest RSA modulus notary accepts.
const MIN_RSA_BITS: usize = 2048;

/// Why a key could not be read, or a signature made or checked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// No `-----BEGIN …-----` line.
    #[error("the key is not PEM (no -----BEGIN line)")]
    NotPem,
    /// PEM framing or base64 that cannot be read.
    #[error("the PEM is malformed: {what}")]
    BadPem {
        /// What is wrong.
        what: &'static str,
    },
    /// A PEM block that holds no private key this module reads.
    #[error(
        "unsupported PEM block `{label}`: expected ENCRYPTED PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY"
    )]
    UnsupportedPem {
        /// The block's label (shortened, control characters escaped).
        label: String,
    },
    /// An encrypted key, and no (or an empty) passphrase.
    #[error("the key is encrypted and no passphrase was given")]
    MissingPassphrase,
    /// Decryption failed: the passphrase is wrong (or the key is corrupted).
    #[error("the key could not be decrypted: wrong passphrase (or a corrupted key)")]
    WrongPassphrase,
    /// A key encryption this module does not do.
    #[error("unsupported key encryption: {what}")]
    UnsupportedEncryption {
        /// Which, and what would work.
        what: String,
    },
    /// DER that is not the private key it claims to be.
    #[error("malformed private key: {what}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
    },
    /// A key of an algorithm other than ECDSA, Ed25519 and RSA.
    #[error("unsupported key algorithm {algorithm}")]
    UnsupportedAlgorithm {
        /// The algorithm's name or OID.
        algorithm: String,
    },
    /// An ECDSA key on a curve other than P-256.
    #[error("unsupported elliptic curve {curve}: notary keys are P-256")]
    UnsupportedCurve {
        /// The curve's name or OID.
        curve: String,
    },
    /// An RSA key smaller than notary accepts.
    #[error("the rsa key has {bits} bits, fewer than the 2048 notary requires")]
    RsaTooSmall {
        /// The modulus size.
        bits: usize,
    },
    /// The signing primitive failed.
    #[error("signing with the {keytype} key failed")]
    Sign {
        /// The key's type.
        keytype: &'static str,
    },
    /// A TUF key type this module cannot verify with.
    #[error("unsupported key type `{keytype}`")]
    UnsupportedKeyType {
        /// The key type (shortened, control characters escaped).
        keytype: String,
    },
    /// A signature method that does not go with the key's type.
    #[error("signature method `{method}` does not go with a key of type {keytype}")]
    MethodMismatch {
        /// The key type.
        keytype: String,
        /// The method (shortened, control characters escaped).
        method: String,
    },
    /// A public key (or its certificate) that cannot be read.
    #[error("the {keytype} public key is malformed: {what}")]
    BadPublicKey {
        /// The key type.
        keytype: String,
        /// What is wrong.
        what: &'static str,
    },
    /// The signature is not the key's over the message.
    #[error("the signature does not verify")]
    BadSignature,
}

/// A repository signing key. `Debug` shows its type, id, role and GUN, never the private key.
pub struct SigningKey {
    inner: Inner,
    /// The public bytes its id is made of: DER SPKI, or the raw Ed25519 key.
    public: Vec<u8>,
    role: Option<String>,
    gun: Option<String>,
}

enum Inner {
    Ecdsa(p256::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::pss::SigningKey<Sha256>>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("keytype", &self.keytype())
            .field("key_id", &self.key_id())
            .field("role", &self.role)
            .field("gun", &self.gun)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Reads a private key from PEM: notary's `ENCRYPTED PRIVATE KEY` (its `role:` and
    /// `gun:` headers are kept, see [`Self::role`]), or an unencrypted `PRIVATE KEY`,
    /// `EC PRIVATE KEY`, `RSA PRIVATE KEY` or `ED25519 PRIVATE KEY`. Only the first PEM block
    /// is read. An empty passphrase counts as none (as in notary); a passphrase given for an
    /// unencrypted key is not used.
    ///
    /// # Errors
    /// Not PEM, an encrypted key without a passphrase or with a wrong one, an encryption or
    /// algorithm other than those above, a curve other than P-256, RSA under 2048 bits.
    pub fn from_pem(pem: &Secret, passphrase: Option<&Secret>) -> Result<Self, KeyError> {
        let block = Pem::parse(pem.expose())?;
        if block.header("Proc-Type").is_some() || block.header("DEK-Info").is_some() {
            return Err(KeyError::UnsupportedEncryption {
                what: "legacy PEM encryption (Proc-Type, DEK-Info); convert the key with \
                       `openssl pkcs8 -topk8`"
                    .to_owned(),
            });
        }
        let inner = match block.label.as_str() {
            "ENCRYPTED PRIVATE KEY" => {
                let passphrase = passphrase
                    .filter(|p| !p.is_empty())
                    .ok_or(KeyError::MissingPassphrase)?;
                decrypt(&block.der, passphrase)?
            }
            "PRIVATE KEY" => parse_pkcs8(&block.der)?,
            "EC PRIVATE KEY" => parse_sec1(&block.der, None)?,
            "RSA PRIVATE KEY" => parse_pkcs1(&block.der)?,
            "ED25519 PRIVATE KEY" => parse_notary_ed25519(&block.der)?,
            other => return Err(KeyError::UnsupportedPem { label: shown(other) }),
        };
        let public = match &inner {
            Inner::Ecdsa(key) => key
                .verifying_key()
                .to_public_key_der()
                .map_err(|_| KeyError::Malformed {
                    what: "the ecdsa public key cannot be encoded",
                })?
                .as_bytes()
                .to_vec(),
            Inner::Ed25519(key) => key.verifying_key().to_bytes().to_vec(),
            Inner::Rsa(key) => key
                .verifying_key()
                .to_public_key_der()
                .map_err(|_| KeyError::Malformed {
                    what: "the rsa public key cannot be encoded",
                })?
                .as_bytes()
                .to_vec(),
        };
        Ok(Self {
            inner,
            public,
            role: block.header("role").map(str::to_owned),
            gun: block.header("gun").map(str::to_owned),
        })
    }

    /// The PEM's `role:` header (`targets`, `root`, `targets/releases`…), if it had one.
    #[must_use]
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// The PEM's `gun:` header (`registry.example.com/org/image`), if it had one.
    #[must_use]
    pub fn gun(&self) -> Option<&str> {
        self.gun.as_deref()
    }

    /// The TUF key type of its public key: `ecdsa`, `ed25519` or `rsa`.
    #[must_use]
    pub fn keytype(&self) -> &'static str {
        match self.inner {
            Inner::Ecdsa(_) => "ecdsa",
            Inner::Ed25519(_) => "ed25519",
            Inner::Rsa(_) => "rsa",
        }
    }

    /// The signature method it signs with: `ecdsa`, `eddsa` or `rsapss`.
    #[must_use]
    pub fn method(&self) -> &'static str {
        match self.inner {
            Inner::Ecdsa(_) => "ecdsa",
            Inner::Ed25519(_) => "eddsa",
            Inner::Rsa(_) => "rsapss",
        }
    }

    /// Notary's canonical key id: the name notary gives the key's file under
    /// `private/`, and its id in `root.json` for every role but root.
    #[must_use]
    pub fn key_id(&self) -> String {
        tuf_key_id(self.keytype(), &self.public)
    }

    /// The id the key has as `ecdsa-x509` (or `rsa-x509`) with `cert_pem` as its public
    /// part, as root keys are listed in `root.json`. `cert_pem` is taken byte for byte
    /// (notary writes `-----BEGIN CERTIFICATE-----\n`, 64-column base64, and a final
    /// newline), and is not checked to hold this key. `None` for Ed25519, which notary has
    /// no certificate form of.
    #[must_use]
    pub fn x509_key_id(&self, cert_pem: &str) -> Option<String> {
        let keytype = match self.inner {
            Inner::Ecdsa(_) => "ecdsa-x509",
            Inner::Rsa(_) => "rsa-x509",
            Inner::Ed25519(_) => return None,
        };
        Some(tuf_key_id(keytype, cert_pem.as_bytes()))
    }

    /// Whether a key as metadata lists it (its `keytype` and base64 `keyval.public`) is
    /// this key: the same public key, or a certificate of it.
    #[must_use]
    pub fn is_listed_as(&self, keytype: &str, public_b64: &str) -> bool {
        let Ok(public) = STANDARD.decode(public_b64.trim()) else {
            return false;
        };
        match keytype.strip_suffix("-x509") {
            None => keytype == self.keytype() && public == self.public,
            Some(base) => {
                base == self.keytype() && certificate_spki(&public).is_ok_and(|spki| spki == self.public)
            }
        }
    }

    /// The public key as TUF lists it:
    /// `{"keytype":T,"keyval":{"private":null,"public":"<base64>"}}`.
    #[must_use]
    pub fn public_key_json(&self) -> serde_json::Value {
        serde_json::json!({
            "keytype": self.keytype(),
            "keyval": {"private": null, "public": STANDARD.encode(&self.public)},
        })
    }

    /// Signs `message` (the canonical JSON of a role's `signed`) as notary does: ECDSA
    /// over SHA-256 as r ‖ s, plain Ed25519, or RSASSA-PSS with SHA-256 and a 32-byte salt.
    ///
    /// # Errors
    /// The signing primitive failing (for RSA, the system's random source).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = KeyError::Sign {
            keytype: self.keytype(),
        };
        match &self.inner {
            Inner::Ecdsa(key) => {
                let sig: p256::ecdsa::Signature = key.try_sign(message).map_err(|_| failed)?;
                Ok(sig.to_bytes().to_vec())
            }
            Inner::Ed25519(key) => Ok(key.sign(message).to_bytes().to_vec()),
            Inner::Rsa(key) => Ok(key.try_sign(message).map_err(|_| failed)?.to_vec()),
        }
    }
}

/// Checks a TUF signature: `sig` by the key `public_b64` (a key's `keyval.public`) of type
/// `keytype` (`ecdsa`, `ecdsa-x509`, `ed25519`, `rsa`, `rsa-x509`) with `method` (`ecdsa`,
/// `eddsa`, `rsapss`, in any case) over `message`.
///
/// # Errors
/// An unknown key type, a method that does not go with it, a public key or certificate that
/// cannot be read (or is not P-256, or RSA under 2048 bits), or a signature that does not
/// verify.
pub fn verify(
    keytype: &str,
    public_b64: &str,
    method: &str,
    message: &[u8],
    sig: &[u8],
) -> Result<(), KeyError> {
    let method = method.to_ascii_lowercase();
    let expected = match keytype {
        "ecdsa" | "ecdsa-x509" => "ecdsa",
        "ed25519" => "eddsa",
        "rsa" | "rsa-x509" => "rsapss",
        other => {
            return Err(KeyError::UnsupportedKeyType {
                keytype: shown(other),
            })
        }
    };
    if method != expected {
        return Err(KeyError::MethodMismatch {
            keytype: keytype.to_owned(),
            method: shown(&method),
        });
    }
    let bad = |what| KeyError::BadPublicKey {
        keytype: keytype.to_owned(),
        what,
    };
    let public = STANDARD
        .decode(public_b64.trim())
        .map_err(|_| bad("not base64"))?;
    match keytype {
        "ecdsa" => verify_ecdsa(keytype, &public, message, sig),
        "ecdsa-x509" => verify_ecdsa(keytype, &certificate_spki(&public).map_err(bad)?, message, sig),
        "rsa" => verify_rsa(keytype, &public, message, sig),
        "rsa-x509" => verify_rsa(keytype, &certificate_spki(&public).map_err(bad)?, message, sig),
        _ => verify_ed25519(&public, message, sig),
    }
}

/// The id of a key as metadata lists it: [`SigningKey::key_id`]'s rule applied to its
/// `keytype` and base64 `keyval.public`. `None` when that is not base64, or the key type
/// is not one notary writes.
#[must_use]
pub fn listed_key_id(keytype: &str, public_b64: &str) -> Option<String> {
    let keytype = ["ecdsa", "ecdsa-x509", "ed25519", "rsa", "rsa-x509"]
        .into_iter()
        .find(|t| *t == keytype)?;
    let public = STANDARD.decode(public_b64.trim()).ok()?;
    Some(tuf_key_id(keytype, &public))
}

/// The hex SHA-256 of `{"keytype":T,"keyval":{"private":null,"public":"<base64>"}}`:
/// canonical JSON (keys sorted, no whitespace) of notary's `TUFKey` with no private part.
/// `keytype` is one of this module's constants, which need no escaping.
fn tuf_key_id(keytype: &str, public: &[u8]) -> String {
    let json = format!(
        r#"{{"keytype":"{keytype}","keyval":{{"private":null,"public":"{}"}}}}"#,
        STANDARD.encode(public)
    );
    hex::encode(Sha256::digest(json.as_bytes()))
}

/// The first PEM block of a text, as Go's `pem.Decode` reads it: anything before the
/// `-----BEGIN` line is skipped, `Key: value` lines right after it are headers, and the
/// base64 body may be broken anywhere by whitespace.
struct Pem {
    label: String,
    headers: Vec<(String, String)>,
    der: Zeroizing<Vec<u8>>,
}

impl Pem {
    fn parse(text: &str) -> Result<Self, KeyError> {
        const BEGIN: &str = "-----BEGIN ";
        let start = text.find(BEGIN).ok_or(KeyError::NotPem)?;
        let rest = &text[start + BEGIN.len()..];
        let (first_line, rest) = rest.split_once('\n').unwrap_or((rest, ""));
        let label = first_line
            .trim_end()
            .strip_suffix("-----")
            .ok_or(KeyError::BadPem {
                what: "the BEGIN line does not end in -----",
            })?;
        let end_line = format!("-----END {label}-----");
        let end = rest.find(&end_line).ok_or(KeyError::BadPem {
            what: "no END line for the BEGIN line",
        })?;
        let mut headers = Vec::new();
        let mut body = Zeroizing::new(String::new());
        let mut in_headers = true;
        for line in rest[..end].lines() {
            let line = line.trim();
            if in_headers {
                if let Some((key, value)) = line.split_once(':') {
                    headers.push((key.trim().to_owned(), value.trim().to_owned()));
                    continue;
                }
                in_headers = false;
            }
            if line.contains(':') {
                return Err(KeyError::BadPem {
                    what: "a header line after the base64 began",
                });
            }
            body.extend(line.chars().filter(|c| !c.is_ascii_whitespace()));
        }
        let mut der = Zeroizing::new(Vec::new());
        STANDARD
            .decode_vec(body.as_bytes(), &mut der)
            .map_err(|_| KeyError::BadPem {
                what: "the body is not base64",
            })?;
        Ok(Self {
            label: label.to_owned(),
            headers,
            der,
        })
    }

    fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Decrypts a PKCS#8 `EncryptedPrivateKeyInfo` (PBES2 with PBKDF2, AES-CBC) and reads the
/// key inside.
fn decrypt(der: &[u8], passphrase: &Secret) -> Result<Inner, KeyError> {
    let malformed = KeyError::Malformed {
        what: "not a PKCS#8 EncryptedPrivateKeyInfo",
    };
    let (algorithm, data) = AnyRef::from_der(der)
        .and_then(|any| {
            any.sequence(|r| {
                let algorithm: AlgorithmIdentifierRef<'_> = r.decode()?;
                let data: &OctetStringRef = r.decode()?;
                Ok((algorithm, data))
            })
        })
        .map_err(|_| malformed)?;
    let supported = "PBES2 with PBKDF2 (HMAC-SHA1 or HMAC-SHA-2) and AES-CBC";
    let scheme =
        pkcs8::pkcs5::EncryptionScheme::try_from(algorithm).map_err(|_| KeyError::UnsupportedEncryption {
            what: format!("{}; supported: {supported}", oid_name(algorithm.oid)),
        })?;
    let Some(pbes2) = scheme.pbes2() else {
        return Err(KeyError::UnsupportedEncryption {
            what: format!("PBES1 ({}); supported: {supported}", algorithm.oid),
        });
    };
    let Some(pbkdf2) = pbes2.kdf.pbkdf2() else {
        return Err(KeyError::UnsupportedEncryption {
            what: format!("a key derivation other than PBKDF2 (scrypt); supported: {supported}"),
        });
    };
    if pbkdf2.iteration_count > MAX_PBKDF2_ITERATIONS {
        return Err(KeyError::UnsupportedEncryption {
            what: format!(
                "PBKDF2 with {} iterations, more than {MAX_PBKDF2_ITERATIONS}",
                pbkdf2.iteration_count
            ),
        });
    }
    let mut buffer = Zeroizing::new(data.as_bytes().to_vec());
    let plain = scheme
        .decrypt_in_place(passphrase.expose(), &mut buffer)
        .map_err(|e| match e {
            pkcs8::pkcs5::Error::DecryptFailed => KeyError::WrongPassphrase,
            _ => KeyError::UnsupportedEncryption {
                what: format!("parameters this module cannot use; supported: {supported}"),
            },
        })?;
    // A wrong passphrase passes the padding check one time in 256 and yields garbage.
    parse_pkcs8(plain).map_err(|e| match e {
        KeyError::Malformed { .. } => KeyError::WrongPassphrase,
        other => other,
    })
}

/// Reads a PKCS#8 `PrivateKeyInfo` (v1 or v2, notary's variants included).
fn parse_pkcs8(der: &[u8]) -> Result<Inner, KeyError> {
    let (version, algorithm, key) = AnyRef::from_der(der)
        .and_then(|any| {
            any.sequence(|r| {
                let version: u8 = r.decode()?;
                let algorithm: AlgorithmIdentifierRef<'_> = r.decode()?;
                let key: &OctetStringRef = r.decode()?;
                // attributes [0] and the public key [1], both optional: not needed
                while !r.is_finished() {
                    r.decode::<AnyRef<'_>>()?;
                }
                Ok((version, algorithm, key))
            })
        })
        .map_err(|_| KeyError::Malformed {
            what: "not a PKCS#8 PrivateKeyInfo",
        })?;
    if version > 1 {
        return Err(KeyError::Malformed {
            what: "a PKCS#8 version other than 1 or 2",
        });
    }
    let key = key.as_bytes();
    match algorithm.oid {
        OID_EC => {
            let curve = algorithm.parameters_oid().map_err(|_| KeyError::Malformed {
                what: "an ecdsa key without a named curve",
            })?;
            parse_sec1(key, Some(curve))
        }
        OID_RSA => {
            // notary writes no parameters; the standard says NULL
            if algorithm.parameters.is_some_and(|p| !p.is_null()) {
                return Err(KeyError::Malformed {
                    what: "rsa key parameters that are not NULL",
                });
            }
            parse_pkcs1(key)
        }
        OID_ED25519 => {
            let seed = <&OctetStringRef>::from_der(key).map_err(|_| KeyError::Malformed {
                what: "an ed25519 key that is not an OCTET STRING",
            })?;
            let seed: &[u8; 32] = seed.as_bytes().try_into().map_err(|_| KeyError::Malformed {
                what: "an ed25519 key that is not 32 bytes",
            })?;
            Ok(Inner::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed)))
        }
        OID_ED25519_NOTARY => parse_notary_ed25519(key),
        other => Err(KeyError::UnsupportedAlgorithm {
            algorithm: oid_name(other),
        }),
    }
}

/// Reads a SEC1 `ECPrivateKey`, which must be on P-256 (`curve`: the one PKCS#8 named).
fn parse_sec1(der: &[u8], curve: Option<ObjectIdentifier>) -> Result<Inner, KeyError> {
    let key = sec1::EcPrivateKey::from_der(der).map_err(|_| KeyError::Malformed {
        what: "not a SEC1 ECPrivateKey",
    })?;
    let named = key.parameters.and_then(sec1::EcParameters::named_curve);
    for oid in [curve, named].into_iter().flatten() {
        if oid != OID_P256 {
            return Err(KeyError::UnsupportedCurve { curve: oid_name(oid) });
        }
    }
    let secret = p256::SecretKey::try_from(key).map_err(|_| KeyError::Malformed {
        what: "not a valid P-256 private key",
    })?;
    Ok(Inner::Ecdsa(secret.into()))
}

/// Reads a PKCS#1 `RSAPrivateKey`, of at least 2048 bits.
fn parse_pkcs1(der: &[u8]) -> Result<Inner, KeyError> {
    let key = rsa::PrivateKey::from_pkcs1_der(der).map_err(|_| KeyError::Malformed {
        what: "not a valid PKCS#1 RSAPrivateKey",
    })?;
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall { bits });
    }
    // salt length = digest length, as notary signs and verifies
    Ok(Inner::Rsa(Box::new(rsa::pss::SigningKey::<Sha256>::new(key))))
}

/// Reads notary's Ed25519 private key: public ‖ seed ‖ public (Go's `ed25519.PrivateKey`
/// after the public key), 96 bytes.
fn parse_notary_ed25519(bytes: &[u8]) -> Result<Inner, KeyError> {
    if bytes.len() != 96 {
        return Err(KeyError::Malformed {
            what: "a notary ed25519 key that is not public, seed and public (96 bytes)",
        });
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&bytes[32..64]);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public = key.verifying_key().to_bytes();
    if bytes[..32] != public || bytes[64..] != public {
        return Err(KeyError::Malformed {
            what: "a notary ed25519 key whose public half does not match its seed",
        });
    }
    Ok(Inner::Ed25519(key))
}

/// The DER `SubjectPublicKeyInfo` of the first certificate in a PEM text.
fn certificate_spki(pem: &[u8]) -> Result<Vec<u8>, &'static str> {
    let text = std::str::from_utf8(pem).map_err(|_| "the certificate is not PEM text")?;
    let block = Pem::parse(text).map_err(|_| "the certificate is not PEM")?;
    if block.label != "CERTIFICATE" {
        return Err("the PEM block is not a CERTIFICATE");
    }
    let cert =
        x509_cert::Certificate::from_der(&block.der).map_err(|_| "the certificate is not valid X.509")?;
    cert.tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|_| "the certificate's public key cannot be encoded")
}

/// Checks an ECDSA P-256 / SHA-256 signature, r ‖ s or DER, by the DER SPKI `spki` (of a
/// key of type `keytype`, for the messages).
fn verify_ecdsa(keytype: &str, spki: &[u8], message: &[u8], sig: &[u8]) -> Result<(), KeyError> {
    let bad = |what| KeyError::BadPublicKey {
        keytype: keytype.to_owned(),
        what,
    };
    let info = SubjectPublicKeyInfoRef::from_der(spki).map_err(|_| bad("not a DER SubjectPublicKeyInfo"))?;
    if info.algorithm.oid != OID_EC {
        return Err(bad("not an elliptic-curve key"));
    }
    let curve = info
        .algorithm
        .parameters_oid()
        .map_err(|_| bad("no named curve"))?;
    if curve != OID_P256 {
        return Err(KeyError::UnsupportedCurve {
            curve: oid_name(curve),
        });
    }
    let key =
        p256::ecdsa::VerifyingKey::from_public_key_der(spki).map_err(|_| bad("not a valid P-256 point"))?;
    // notary's verifier tries ASN.1 first, then the r ‖ s it writes
    let sig = p256::ecdsa::Signature::from_der(sig)
        .or_else(|_| p256::ecdsa::Signature::from_slice(sig))
        .map_err(|_| KeyError::BadSignature)?;
    key.verify(message, &sig).map_err(|_| KeyError::BadSignature)
}

/// Checks an RSASSA-PSS / SHA-256 signature (32-byte salt) by the DER SPKI `spki` (of a
/// key of type `keytype`, for the messages).
fn verify_rsa(keytype: &str, spki: &[u8], message: &[u8], sig: &[u8]) -> Result<(), KeyError> {
    let bad = |what| KeyError::BadPublicKey {
        keytype: keytype.to_owned(),
        what,
    };
    let info = SubjectPublicKeyInfoRef::from_der(spki).map_err(|_| bad("not a DER SubjectPublicKeyInfo"))?;
    if info.algorithm.oid != OID_RSA {
        return Err(bad("not an rsa key"));
    }
    let key = rsa::PublicKey::try_from(info).map_err(|_| bad("not a valid rsa public key"))?;
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall { bits });
    }
    let sig = rsa::pss::Signature::try_from(sig).map_err(|_| KeyError::BadSignature)?;
    rsa::pss::VerifyingKey::<Sha256>::new(key)
        .verify(message, &sig)
        .map_err(|_| KeyError::BadSignature)
}

/// Checks an Ed25519 signature by the 32-byte key `public`.
fn verify_ed25519(public: &[u8], message: &[u8], sig: &[u8]) -> Result<(), KeyError> {
    let bad = |what| KeyError::BadPublicKey {
        keytype: "ed25519".to_owned(),
        what,
    };
    let public: &[u8; 32] = public.try_into().map_err(|_| bad("not 32 bytes"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(public).map_err(|_| bad("not a valid point"))?;
    let sig: &[u8; 64] = sig.try_into().map_err(|_| KeyError::BadSignature)?;
    key.verify(message, &ed25519_dalek::Signature::from_bytes(sig))
        .map_err(|_| KeyError::BadSignature)
}

/// A known OID's name, or the OID.
fn oid_name(oid: ObjectIdentifier) -> String {
    let name = match oid.to_string().as_str() {
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        "1.2.840.10040.4.1" => "dsa",
        "1.3.101.110" => "x25519",
        "1.3.101.111" => "x448",
        "1.3.101.113" => "ed448",
        "1.2.840.113549.1.1.10" => "rsassa-pss",
        "1.2.840.113549.1.5.3" | "1.2.840.113549.1.5.10" | "1.2.840.113549.1.5.6" => {
            "PBES1 (DES or RC2 with MD5 or SHA-1)"
        }
        "1.2.840.113549.1.5.13" => "PBES2 with an unsupported cipher or key derivation",
        _ => return oid.to_string(),
    };
    format!("{name} ({oid})")
}

/// A string from the input, safe to put in a message: at most 64 characters, control
/// characters escaped.
fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(64).flat_map(char::escape_debug).collect();
    if text.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures made by notary 0.7, OpenSSL and Python's `cryptography`, never by this
    // crate: tests/fixtures/notary/README.md and make-fixtures.sh say how. The ids are the
    // file names notary gave the keys (key-ids.txt).
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/notary/", $name))
        };
    }
    const ROOT_KEY: &str = fixture!("root-ecdsa.key");
    const TARGETS_KEY: &str = fixture!("targets-ecdsa.key");
    const SNAPSHOT_KEY: &str = fixture!("snapshot-ecdsa.key");
    const GENERATED_KEY: &str = fixture!("generated-ecdsa-key.pem");
    const GENERATED_PUB: &str = fixture!("generated-ecdsa.pub.pem");
    const RSA_KEY: &str = fixture!("rsa.key");
    const RSA_PKCS8: &str = fixture!("rsa-pkcs8.pem");
    const RSA_CERT: &str = fixture!("rsa-cert.pem");
    const ED25519_KEY: &str = fixture!("ed25519.key");
    const ED25519_PKCS8: &str = fixture!("ed25519-pkcs8.pem");
    const ED25519_LEGACY: &str = fixture!("ed25519-legacy.pem");
    const TARGETS_PKCS8: &str = fixture!("targets-ecdsa-pkcs8.pem");
    const TARGETS_SEC1: &str = fixture!("targets-ecdsa-sec1.pem");
    const TARGETS_SHA256_AES128: &str = fixture!("targets-ecdsa-sha256-aes128.pem");
    const TARGETS_LEGACY_ENCRYPTED: &str = fixture!("targets-ecdsa-legacy-encrypted.pem");
    const TARGETS_SPKI_B64: &str = fixture!("targets-ecdsa.spki.b64");
    const P384_PKCS8: &str = fixture!("p384-pkcs8.pem");
    const P384_SEC1: &str = fixture!("p384-sec1.pem");
    const P384_SPKI_B64: &str = fixture!("p384.spki.b64");
    const ROOT_JSON: &str = fixture!("root.json");
    const TARGETS_JSON: &str = fixture!("targets.json");
    const TIMESTAMP_JSON: &str = fixture!("timestamp.json");
    const MESSAGE: &str = fixture!("message.txt");
    const MESSAGE_ECDSA_SIG: &str = fixture!("message.ecdsa.sig");
    const MESSAGE_ECDSA_DER_SIG: &str = fixture!("message.ecdsa-der.sig");
    const MESSAGE_RSAPSS_SIG: &str = fixture!("message.rsapss.sig");
    const MESSAGE_EDDSA_SIG: &str = fixture!("message.eddsa.sig");

    const ROOT_PASS: &str = "root-fixture-pass";
    const TARGETS_PASS: &str = "targets-fixture-pass";
    const SNAPSHOT_PASS: &str = "snapshot-fixture-pass";
    // `notary key generate --role targets -o` encrypts with NOTARY_DELEGATION_PASSPHRASE
    const DELEGATION_PASS: &str = "delegation-fixture-pass";
    // what OpenSSL re-encrypted targets-ecdsa-sha256-aes128.pem with
    const OTHER_PASS: &str = "other-fixture-pass";

    const ROOT_ID: &str = "17162295695503d55293355ac246b01e01a8b335acc3a88e01865a8d933ba65b";
    /// The root key as `ecdsa-x509` in root.json.
    const ROOT_X509_ID: &str = "533286153249e5ab3f409238b04cb6908ea20826e7c3f1eb8e09db3fc88d6232";
    const TARGETS_ID: &str = "560b2fae1980a14491d7364c2439b4eb5a667d00b74aa61fe63c210aed552ce8";
    const SNAPSHOT_ID: &str = "f80bb35afa0980787e76d37cc0437c15506253af59964230b47769beb343c732";
    const GENERATED_ID: &str = "8e264cfcb3ee642483ac41e5d90253c0f678a8b966c4569beb102c2a6cda9e8b";
    const RSA_ID: &str = "500e9dc9ca02e4826e70e572e1a1110b0fe327cb1eb9815ad9af89a93c720cff";
    const ED25519_ID: &str = "e8b0917b70350f0192821ca6cd6b6c226d6b28e59c6e1830f0b31337dff82a51";
    /// notary-server's timestamp key (ed25519), in root.json.
    const TIMESTAMP_ID: &str = "6c11541cd2145e616634a98cee6606b80f2eb222420e0f8289d1fd4dc12517bf";

    fn load(pem: &str, passphrase: Option<&str>) -> Result<SigningKey, KeyError> {
        SigningKey::from_pem(&Secret::new(pem), passphrase.map(Secret::new).as_ref())
    }

    fn root_json() -> serde_json::Value {
        serde_json::from_str(ROOT_JSON).unwrap()
    }

    /// root.json's listing of key `id`.
    fn listed(id: &str) -> serde_json::Value {
        root_json()["signed"]["keys"][id].clone()
    }

    fn listed_public(id: &str) -> String {
        listed(id)["keyval"]["public"].as_str().unwrap().to_owned()
    }

    fn b64(text: &str) -> Vec<u8> {
        STANDARD.decode(text.trim()).unwrap()
    }

    /// The bytes notary signed: `signed` exactly as it wrote it (canonical JSON), and the
    /// first signature's key id, method and bytes.
    fn signed_and_signature(envelope: &str) -> (&[u8], String, String, Vec<u8>) {
        let rest = envelope.strip_prefix(r#"{"signed":"#).unwrap();
        let end = rest.rfind(r#","signatures":["#).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(envelope).unwrap();
        let sig = &parsed["signatures"][0];
        (
            &rest.as_bytes()[..end],
            sig["keyid"].as_str().unwrap().to_owned(),
            sig["method"].as_str().unwrap().to_owned(),
            b64(sig["sig"].as_str().unwrap()),
        )
    }

    #[test]
    fn notary_targets_key_decrypts_with_its_headers_and_id() {
        let key = load(TARGETS_KEY, Some(TARGETS_PASS)).unwrap();
        assert_eq!(key.keytype(), "ecdsa");
        assert_eq!(key.method(), "ecdsa");
        assert_eq!(key.role(), Some("targets"));
        assert_eq!(key.gun(), Some("127.0.0.1:5000/x/y"));
        assert_eq!(key.key_id(), TARGETS_ID);
        // exactly as notary listed it in root.json
        assert_eq!(key.public_key_json(), listed(TARGETS_ID));
        assert_eq!(key.x509_key_id("x").map(|id| id.len()), Some(64));
    }

    #[test]
    fn notary_snapshot_and_generated_keys() {
        let key = load(SNAPSHOT_KEY, Some(SNAPSHOT_PASS)).unwrap();
        assert_eq!(
            (key.key_id().as_str(), key.role()),
            (SNAPSHOT_ID, Some("snapshot"))
        );
        assert_eq!(key.public_key_json(), listed(SNAPSHOT_ID));

        let key = load(GENERATED_KEY, Some(DELEGATION_PASS)).unwrap();
        assert_eq!(key.key_id(), GENERATED_ID);
        assert_eq!((key.role(), key.gun()), (Some("targets"), None));
        // the public PEM `notary key generate` wrote next to it (a PUBLIC KEY, role header)
        let public = Pem::parse(GENERATED_PUB).unwrap();
        assert_eq!(public.label, "PUBLIC KEY");
        assert_eq!(public.header("role"), Some("targets"));
        assert_eq!(
            key.public_key_json()["keyval"]["public"],
            STANDARD.encode(&*public.der)
        );
    }

    #[test]
    fn notary_root_key_ids_plain_and_x509() {
        let key = load(ROOT_KEY, Some(ROOT_PASS)).unwrap();
        assert_eq!((key.role(), key.gun()), (Some("root"), None));
        // the file is named by the plain ecdsa id ...
        assert_eq!(key.key_id(), ROOT_ID);
        // ... root.json lists it as ecdsa-x509 with its self-signed certificate
        assert_eq!(root_json()["signed"]["roles"]["root"]["keyids"][0], ROOT_X509_ID);
        assert_eq!(listed(ROOT_X509_ID)["keytype"], "ecdsa-x509");
        let cert = String::from_utf8(b64(&listed_public(ROOT_X509_ID))).unwrap();
        assert!(
            cert.starts_with("-----BEGIN CERTIFICATE-----\n")
                && cert.ends_with("-----END CERTIFICATE-----\n")
        );
        assert_eq!(key.x509_key_id(&cert).as_deref(), Some(ROOT_X509_ID));
        assert!(root_json()["signed"]["keys"].get(ROOT_ID).is_none());
        // and the certificate holds this key
        let sig = key.sign(b"root").unwrap();
        verify("ecdsa-x509", &listed_public(ROOT_X509_ID), "ecdsa", b"root", &sig).unwrap();
    }

    #[test]
    fn openssl_forms_of_the_targets_key_have_its_id() {
        for (pem, pass) in [
            (TARGETS_PKCS8, None),
            (TARGETS_SEC1, None),
            (TARGETS_PKCS8, Some("ignored for an unencrypted key")),
            (TARGETS_SHA256_AES128, Some(OTHER_PASS)),
        ] {
            let key = load(pem, pass).unwrap();
            assert_eq!(key.key_id(), TARGETS_ID);
            assert_eq!(key.public_key_json()["keyval"]["public"], TARGETS_SPKI_B64.trim());
            assert_eq!((key.role(), key.gun()), (None, None));
        }
    }

    #[test]
    fn rsa_keys() {
        let key = load(RSA_KEY, Some(TARGETS_PASS)).unwrap();
        assert_eq!((key.keytype(), key.method()), ("rsa", "rsapss"));
        assert_eq!(key.key_id(), RSA_ID);
        assert_eq!(key.gun(), Some("127.0.0.1:5000/x/rsa"));
        // the OpenSSL original notary imported
        assert_eq!(load(RSA_PKCS8, None).unwrap().key_id(), RSA_ID);
        assert_eq!(key.x509_key_id("x"), Some(tuf_key_id("rsa-x509", b"x")));
    }

    #[test]
    fn ed25519_keys() {
        let key = load(ED25519_KEY, Some(TARGETS_PASS)).unwrap();
        assert_eq!((key.keytype(), key.method()), ("ed25519", "eddsa"));
        assert_eq!(key.key_id(), ED25519_ID);
        assert_eq!(key.gun(), Some("127.0.0.1:5000/x/ed"));
        assert_eq!(key.x509_key_id("x"), None);
        assert_eq!(
            key.public_key_json()["keyval"]["public"]
                .as_str()
                .map(|p| b64(p).len()),
            Some(32)
        );
        // the same key as RFC 8410 PKCS#8 and as notary's legacy PEM
        assert_eq!(load(ED25519_PKCS8, None).unwrap().key_id(), ED25519_ID);
        assert_eq!(load(ED25519_LEGACY, None).unwrap().key_id(), ED25519_ID);
    }

    #[test]
    fn wrong_passphrase_says_so_and_shows_nothing_secret() {
        let passphrase = "not-the-right-passphrase";
        for (pem, right) in [
            (TARGETS_KEY, TARGETS_PASS),
            (RSA_KEY, TARGETS_PASS),
            (ED25519_KEY, TARGETS_PASS),
        ] {
            let err = load(pem, Some(passphrase)).unwrap_err();
            assert_eq!(err, KeyError::WrongPassphrase);
            for text in [err.to_string(), format!("{err:?}")] {
                assert!(!text.contains(passphrase) && !text.contains(right), "{text}");
                for line in pem.lines().filter(|l| l.len() > 8 && !l.starts_with("-----")) {
                    assert!(!text.contains(line), "{text}");
                }
            }
        }
        let err = load(TARGETS_SHA256_AES128, Some(TARGETS_PASS)).unwrap_err();
        assert_eq!(err, KeyError::WrongPassphrase);
        assert_eq!(
            err.to_string(),
            "the key could not be decrypted: wrong passphrase (or a corrupted key)"
        );
    }

    #[test]
    fn missing_passphrase() {
        for pass in [None, Some("")] {
            let err = load(TARGETS_KEY, pass).unwrap_err();
            assert_eq!(err, KeyError::MissingPassphrase);
            assert_eq!(
                err.to_string(),
                "the key is encrypted and no passphrase was given"
            );
        }
    }

    #[test]
    fn not_a_key() {
        assert_eq!(load("", None).unwrap_err(), KeyError::NotPem);
        assert_eq!(load("just some text\n", Some("x")).unwrap_err(), KeyError::NotPem);
        assert!(matches!(
            load("-----BEGIN PRIVATE KEY-----\nAAAA\n", None),
            Err(KeyError::BadPem { .. })
        ));
        assert!(matches!(
            load(
                "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
                None
            ),
            Err(KeyError::BadPem { .. })
        ));
        assert!(matches!(
            load("-----BEGIN PRIVATE KEY\n-----END PRIVATE KEY-----\n", None),
            Err(KeyError::BadPem { .. })
        ));
        assert!(matches!(
            load(
                "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n",
                None
            ),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            load(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8=\n-----END ENCRYPTED PRIVATE KEY-----\n",
                Some("x")
            ),
            Err(KeyError::Malformed { .. })
        ));
        let err = load(RSA_CERT, None).unwrap_err();
        assert_eq!(
            err,
            KeyError::UnsupportedPem {
                label: "CERTIFICATE".to_owned()
            }
        );
        assert!(
            err.to_string().starts_with("unsupported PEM block `CERTIFICATE`"),
            "{err}"
        );
        let hostile = load(
            "-----BEGIN \x1b[31mEVIL\n-----\n-----END \x1b[31mEVIL\n-----\n",
            None,
        );
        assert!(matches!(hostile, Err(KeyError::BadPem { .. })), "{hostile:?}");
        let label = format!("-----BEGIN {0}-----\n-----END {0}-----\n", "\u{7}X".repeat(100));
        let err = load(&label, None).unwrap_err().to_string();
        assert!(!err.contains('\u{7}') && err.len() < 400, "{err}");
    }

    #[test]
    fn unsupported_keys_and_encryptions() {
        for pem in [P384_PKCS8, P384_SEC1] {
            let err = load(pem, None).unwrap_err();
            assert_eq!(
                err,
                KeyError::UnsupportedCurve {
                    curve: "P-384 (1.3.132.0.34)".to_owned()
                }
            );
            assert_eq!(
                err.to_string(),
                "unsupported elliptic curve P-384 (1.3.132.0.34): notary keys are P-256"
            );
        }
        let err = load(TARGETS_LEGACY_ENCRYPTED, Some(OTHER_PASS)).unwrap_err();
        assert!(
            matches!(&err, KeyError::UnsupportedEncryption { what } if what.contains("Proc-Type")),
            "{err}"
        );
        // a DSA PrivateKeyInfo (algorithm 1.2.840.10040.4.1), body irrelevant
        let dsa = [
            0x30, 0x14, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01,
            0x05, 0x00, 0x04, 0x02, 0x00, 0x00,
        ];
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(dsa)
        );
        assert_eq!(
            load(&pem, None).unwrap_err().to_string(),
            "unsupported key algorithm dsa (1.2.840.10040.4.1)"
        );
    }

    #[test]
    fn mangled_keys_fail_without_panicking() {
        for (pem, pass) in [
            (TARGETS_KEY, Some(TARGETS_PASS)),
            (TARGETS_PKCS8, None),
            (TARGETS_SEC1, None),
            (ED25519_KEY, Some(TARGETS_PASS)),
            (ED25519_LEGACY, None),
            (ED25519_PKCS8, None),
        ] {
            let block = Pem::parse(pem).unwrap();
            let headers: String = block
                .headers
                .iter()
                .flat_map(|(k, v)| [k, ": ", v, "\n"])
                .collect();
            let rewrap = |der: &[u8]| {
                format!(
                    "-----BEGIN {0}-----\n{headers}\n{1}\n-----END {0}-----\n",
                    block.label,
                    STANDARD.encode(der)
                )
            };
            assert_eq!(load(&rewrap(&block.der), pass).unwrap().key_id().len(), 64);
            // every byte of a plain key and the structure of an encrypted one (tags, lengths,
            // OIDs), a sample of the rest: each decryption costs 2048 PBKDF2 rounds
            for i in (0..block.der.len()).filter(|&i| pass.is_none() || i < 48 || i % 48 == 0) {
                let mut flipped = block.der.to_vec();
                flipped[i] ^= 0x41;
                let _ = load(&rewrap(&flipped), pass);
                assert!(load(&rewrap(&block.der[..i]), pass).is_err());
            }
        }
        // RSA (slow to validate): truncations only
        let block = Pem::parse(RSA_PKCS8).unwrap();
        for i in (0..block.der.len()).step_by(37) {
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                STANDARD.encode(&block.der[..i])
            );
            assert!(load(&pem, None).is_err());
        }
    }

    #[test]
    fn debug_shows_no_private_key() {
        let key = load(TARGETS_KEY, Some(TARGETS_PASS)).unwrap();
        assert_eq!(
            format!("{key:?}"),
            format!(
                "SigningKey {{ keytype: \"ecdsa\", key_id: \"{TARGETS_ID}\", role: Some(\"targets\"), gun: Some(\"127.0.0.1:5000/x/y\"), .. }}"
            )
        );
    }

    #[test]
    fn sign_then_verify_each_algorithm() {
        for (pem, pass, sig_len) in [
            (TARGETS_KEY, TARGETS_PASS, 64),
            (ED25519_KEY, TARGETS_PASS, 64),
            (RSA_KEY, TARGETS_PASS, 256),
        ] {
            let key = load(pem, Some(pass)).unwrap();
            let public = key.public_key_json();
            let (keytype, public) = (
                public["keytype"].as_str().unwrap(),
                public["keyval"]["public"].as_str().unwrap(),
            );
            let message = br#"{"_type":"Targets","version":2}"#;
            let sig = key.sign(message).unwrap();
            assert_eq!(sig.len(), sig_len, "{keytype}");
            verify(keytype, public, key.method(), message, &sig).unwrap();
            verify(keytype, public, &key.method().to_uppercase(), message, &sig).unwrap();
            assert_eq!(
                verify(
                    keytype,
                    public,
                    key.method(),
                    br#"{"_type":"Targets","version":3}"#,
                    &sig
                ),
                Err(KeyError::BadSignature),
                "{keytype}"
            );
            for i in [0, sig.len() / 2, sig.len() - 1] {
                let mut tampered = sig.clone();
                tampered[i] ^= 1;
                assert_eq!(
                    verify(keytype, public, key.method(), message, &tampered),
                    Err(KeyError::BadSignature)
                );
            }
            assert_eq!(
                verify(keytype, public, key.method(), message, &sig[1..]),
                Err(KeyError::BadSignature)
            );
            assert_eq!(
                verify(keytype, public, key.method(), message, &[]),
                Err(KeyError::BadSignature)
            );
        }
    }

    #[test]
    fn verifies_openssl_signatures() {
        let message = MESSAGE.as_bytes();
        let ecdsa = b64(MESSAGE_ECDSA_SIG);
        assert_eq!(ecdsa.len(), 64);
        verify("ecdsa", TARGETS_SPKI_B64, "ecdsa", message, &ecdsa).unwrap();
        verify(
            "ecdsa",
            TARGETS_SPKI_B64,
            "ecdsa",
            message,
            &b64(MESSAGE_ECDSA_DER_SIG),
        )
        .unwrap();
        assert_eq!(
            verify("ecdsa", TARGETS_SPKI_B64, "ecdsa", b"other", &ecdsa),
            Err(KeyError::BadSignature)
        );

        let rsa = load(RSA_PKCS8, None).unwrap().public_key_json();
        let rsa_public = rsa["keyval"]["public"].as_str().unwrap();
        let pss = b64(MESSAGE_RSAPSS_SIG);
        verify("rsa", rsa_public, "rsapss", message, &pss).unwrap();
        verify("rsa-x509", &STANDARD.encode(RSA_CERT), "rsapss", message, &pss).unwrap();
        assert_eq!(
            verify("rsa", rsa_public, "rsapss", b"other", &pss),
            Err(KeyError::BadSignature)
        );

        let ed = load(ED25519_PKCS8, None).unwrap().public_key_json();
        let ed_public = ed["keyval"]["public"].as_str().unwrap();
        verify("ed25519", ed_public, "eddsa", message, &b64(MESSAGE_EDDSA_SIG)).unwrap();
        assert_eq!(
            verify("ed25519", ed_public, "eddsa", b"other", &b64(MESSAGE_EDDSA_SIG)),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn verifies_notary_metadata_signatures() {
        for (envelope, id, keytype, method) in [
            (ROOT_JSON, ROOT_X509_ID, "ecdsa-x509", "ecdsa"),
            (TARGETS_JSON, TARGETS_ID, "ecdsa", "ecdsa"),
            (TIMESTAMP_JSON, TIMESTAMP_ID, "ed25519", "eddsa"),
        ] {
            let (signed, keyid, sig_method, sig) = signed_and_signature(envelope);
            assert_eq!((keyid.as_str(), sig_method.as_str()), (id, method));
            assert_eq!(listed(id)["keytype"], keytype);
            let public = listed_public(id);
            verify(keytype, &public, method, signed, &sig).unwrap();
            let mut changed = signed.to_vec();
            changed[10] ^= 1;
            assert_eq!(
                verify(keytype, &public, method, &changed, &sig),
                Err(KeyError::BadSignature)
            );
        }
    }

    #[test]
    fn verify_refuses_what_it_cannot_check() {
        let sig = [0u8; 64];
        assert_eq!(
            verify("\x1b[2Jdsa", "", "dsa", b"m", &sig)
                .unwrap_err()
                .to_string(),
            "unsupported key type `\\u{1b}[2Jdsa`"
        );
        assert_eq!(
            verify("ecdsa", TARGETS_SPKI_B64, "eddsa", b"m", &sig),
            Err(KeyError::MethodMismatch {
                keytype: "ecdsa".to_owned(),
                method: "eddsa".to_owned()
            })
        );
        assert!(matches!(
            verify("rsa", TARGETS_SPKI_B64, "ecdsa", b"m", &sig),
            Err(KeyError::MethodMismatch { .. })
        ));
        let bad =
            |keytype: &str, public: &str, method: &str| match verify(keytype, public, method, b"m", &sig) {
                Err(KeyError::BadPublicKey { keytype: k, what }) => {
                    assert_eq!(k, keytype);
                    what
                }
                other => panic!("{keytype}: {other:?}"),
            };
        assert_eq!(bad("ecdsa", "***", "ecdsa"), "not base64");
        assert_eq!(
            bad("ecdsa", "aGVsbG8=", "ecdsa"),
            "not a DER SubjectPublicKeyInfo"
        );
        assert_eq!(
            bad("ecdsa", &listed_public(TIMESTAMP_ID), "ecdsa"),
            "not a DER SubjectPublicKeyInfo"
        );
        assert_eq!(bad("ed25519", TARGETS_SPKI_B64, "eddsa"), "not 32 bytes");
        assert_eq!(
            bad("ecdsa-x509", TARGETS_SPKI_B64, "ecdsa"),
            "the certificate is not PEM text"
        );
        assert_eq!(
            bad("ecdsa-x509", &STANDARD.encode("hello"), "ecdsa"),
            "the certificate is not PEM"
        );
        assert_eq!(
            bad("ecdsa-x509", &STANDARD.encode(GENERATED_PUB), "ecdsa"),
            "the PEM block is not a CERTIFICATE"
        );
        assert_eq!(
            bad("ecdsa-x509", &STANDARD.encode(RSA_CERT), "ecdsa"),
            "not an elliptic-curve key"
        );
        assert_eq!(bad("rsa", TARGETS_SPKI_B64, "rsapss"), "not an rsa key");
        let cert = "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            bad("rsa-x509", &STANDARD.encode(cert), "rsapss"),
            "the certificate is not valid X.509"
        );
        // a P-384 key
        assert!(matches!(
            verify("ecdsa", P384_SPKI_B64, "ecdsa", b"m", &sig),
            Err(KeyError::UnsupportedCurve { .. })
        ));
    }
}
