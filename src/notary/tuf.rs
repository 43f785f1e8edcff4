//! The TUF metadata of a Notary repository (GUN): parsing, verifying the chain root →
//! timestamp → snapshot → targets → delegations, and writing a new targets role.
//!
//! Follows notary's dialect (notaryproject/notary `tuf/data`): `{"signed": …,
//! "signatures": [{"keyid","method","sig"}]}` envelopes, capitalised `_type`s, hashes and
//! signatures in standard base64, signatures over the canonical JSON of `signed`. Roles are
//! kept as JSON values, so a role we rewrite keeps every field we do not know.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256, Sha512};

use super::canonical;
use super::key;

/// What is wrong with a repository's metadata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TufError {
    /// Not JSON of the envelope's shape.
    #[error("{role}.json is not valid TUF metadata")]
    Parse {
        /// The role.
        role: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A field missing or of the wrong kind.
    #[error("{role}.json: {what}")]
    Shape {
        /// The role.
        role: String,
        /// What is wrong.
        what: String,
    },
    /// Fewer valid signatures than the role's threshold.
    #[error("{role}.json has {valid} valid signature(s) from its keys, {threshold} needed")]
    Signatures {
        /// The role.
        role: String,
        /// Valid signatures from distinct listed keys.
        valid: usize,
        /// The role's threshold.
        threshold: usize,
    },
    /// Metadata past its expiry.
    #[error("{role}.json expired at {expires}")]
    Expired {
        /// The role.
        role: String,
        /// When.
        expires: String,
    },
    /// Bytes that do not match the length or hashes their parent lists.
    #[error("{role}.json does not match the length and hashes {parent}.json lists for it")]
    Mismatch {
        /// The role.
        role: String,
        /// The role that lists it.
        parent: String,
    },
    /// The canonical form cannot be made.
    #[error("{role}.json cannot be made canonical")]
    Canonical {
        /// The role.
        role: String,
        /// Why.
        #[source]
        source: canonical::CanonicalError,
    },
    /// Our signature could not be made.
    #[error("sign {role}")]
    Sign {
        /// The role.
        role: String,
        /// Why.
        #[source]
        source: key::KeyError,
    },
}

type Result<T, E = TufError> = std::result::Result<T, E>;

/// A signed role as served.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The role's name (`root`, `targets/releases`, …).
    pub role: String,
    /// The signed part, as JSON.
    pub signed: Value,
    /// Its signatures.
    pub signatures: Vec<Signature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct Signature {
    /// The signing key's id.
    pub keyid: String,
    /// `ecdsa`, `eddsa`, `rsapss`, …
    pub method: String,
    /// base64 signature.
    pub sig: String,
}

/// A public key as metadata lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct PublicKey {
    /// `ecdsa`, `ecdsa-x509`, `ed25519`, `rsa`, `rsa-x509`.
    pub keytype: String,
    /// The key's material.
    pub keyval: KeyVal,
}

/// `keyval` of a [`PublicKey`].
#[derive(Debug, Clone, Deserialize)]
pub struct KeyVal {
    /// base64 public part (DER SPKI, raw ed25519 key, or a PEM certificate).
    pub public: String,
}

/// Which keys may sign a role, and how many must.
#[derive(Debug, Clone, Deserialize)]
pub struct RoleKeys {
    /// Key ids.
    pub keyids: Vec<String>,
    /// Signatures needed.
    pub threshold: usize,
}

#[derive(Deserialize)]
struct RawEnvelope {
    signed: Value,
    signatures: Vec<Signature>,
}

/// Length and hashes of a file, as snapshot and timestamp list them.
#[derive(Debug, Clone, Deserialize)]
struct FileMeta {
    length: u64,
    hashes: BTreeMap<String, String>,
}

impl Envelope {
    /// Parses the served bytes of `role`.
    ///
    /// # Errors
    /// When they are not an envelope.
    pub fn parse(role: &str, bytes: &[u8]) -> Result<Self> {
        let raw: RawEnvelope = serde_json::from_slice(bytes).map_err(|source| TufError::Parse {
            role: role.to_owned(),
            source,
        })?;
        Ok(Self {
            role: role.to_owned(),
            signed: raw.signed,
            signatures: raw.signatures,
        })
    }

    fn shape(&self, what: impl Into<String>) -> TufError {
        TufError::Shape {
            role: self.role.clone(),
            what: what.into(),
        }
    }

    /// `signed._type`, which must be `wanted`.
    fn expect_type(&self, wanted: &str) -> Result<()> {
        match self.signed.get("_type").and_then(Value::as_str) {
            Some(t) if t.eq_ignore_ascii_case(wanted) => Ok(()),
            other => Err(self.shape(format!("_type is {other:?}, not {wanted:?}"))),
        }
    }

    /// `signed.version`.
    ///
    /// # Errors
    /// When it is missing or not a positive integer.
    pub fn version(&self) -> Result<u64> {
        self.signed
            .get("version")
            .and_then(Value::as_u64)
            .ok_or_else(|| self.shape("version is missing or not a positive integer"))
    }

    /// Fails when `signed.expires` is missing, malformed or past `now` (seconds since the
    /// epoch).
    fn check_expiry(&self, now: i64) -> Result<()> {
        let expires = self
            .signed
            .get("expires")
            .and_then(Value::as_str)
            .ok_or_else(|| self.shape("expires is missing"))?;
        let when = crate::time::parse(expires)
            .ok_or_else(|| self.shape(format!("expires {expires:?} is not RFC 3339")))?;
        if when <= now {
            return Err(TufError::Expired {
                role: self.role.clone(),
                expires: expires.to_owned(),
            });
        }
        Ok(())
    }

    /// The canonical bytes of `signed`: what the signatures cover.
    fn canonical(&self) -> Result<Vec<u8>> {
        canonical::to_vec(&self.signed).map_err(|source| TufError::Canonical {
            role: self.role.clone(),
            source,
        })
    }

    /// Checks that at least `keys.threshold` distinct listed keys signed it.
    ///
    /// # Errors
    /// Too few valid signatures (a threshold of 0 counts as 1).
    pub fn verify(&self, all_keys: &BTreeMap<String, PublicKey>, keys: &RoleKeys) -> Result<()> {
        let message = self.canonical()?;
        let threshold = keys.threshold.max(1);
        let listed: std::collections::HashSet<&String> = keys.keyids.iter().collect();
        let mut valid = std::collections::BTreeSet::new();
        // one try per listed key: a server cannot make us check a key's signature twice
        let mut tried = std::collections::HashSet::new();
        for signature in &self.signatures {
            if !listed.contains(&signature.keyid) || !tried.insert(signature.keyid.as_str()) {
                continue;
            }
            let Some(public) = all_keys.get(&signature.keyid) else {
                continue;
            };
            let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(&signature.sig) else {
                continue;
            };
            let method = signature.method.to_ascii_lowercase();
            if key::verify(&public.keytype, &public.keyval.public, &method, &message, &sig).is_ok() {
                valid.insert(signature.keyid.clone());
            }
        }
        if valid.len() < threshold {
            return Err(TufError::Signatures {
                role: self.role.clone(),
                valid: valid.len(),
                threshold,
            });
        }
        Ok(())
    }

    /// `signed.<field>` deserialized.
    fn field<T: serde::de::DeserializeOwned>(&self, field: &str) -> Result<T> {
        let value = self
            .signed
            .get(field)
            .cloned()
            .ok_or_else(|| self.shape(format!("{field} is missing")))?;
        serde_json::from_value(value).map_err(|e| self.shape(format!("{field}: {e}")))
    }
}

/// Fails unless `bytes` have the length and every known hash that `parent` lists for
/// `role` in its `meta`.
fn check_meta(parent: &Envelope, role: &str, bytes: &[u8]) -> Result<()> {
    let meta: BTreeMap<String, FileMeta> = parent.field("meta")?;
    let mismatch = || TufError::Mismatch {
        role: role.to_owned(),
        parent: parent.role.clone(),
    };
    let listed = meta
        .get(role)
        .ok_or_else(|| parent.shape(format!("meta lists no {role}")))?;
    if listed.length != bytes.len() as u64 {
        return Err(mismatch());
    }
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let mut checked = 0;
    for (algorithm, value) in &listed.hashes {
        let ours = match algorithm.as_str() {
            "sha256" => b64(&Sha256::digest(bytes)),
            "sha512" => b64(&Sha512::digest(bytes)),
            _ => continue,
        };
        if &ours != value {
            return Err(mismatch());
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(mismatch());
    }
    Ok(())
}

/// The served bytes of each role, fetched by the caller in order.
pub struct Served {
    /// `root.json`.
    pub root: Vec<u8>,
    /// `timestamp.json`.
    pub timestamp: Vec<u8>,
    /// `snapshot.json`.
    pub snapshot: Vec<u8>,
    /// `targets.json`.
    pub targets: Vec<u8>,
    /// Each delegation the snapshot lists that targets delegates to: name and bytes.
    pub delegations: Vec<(String, Vec<u8>)>,
}

/// A repository whose chain verified.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Root.
    pub root: Envelope,
    /// Snapshot.
    pub snapshot: Envelope,
    /// Targets.
    pub targets: Envelope,
    /// Delegated targets roles that exist, by name.
    pub delegations: BTreeMap<String, Envelope>,
    root_keys: BTreeMap<String, PublicKey>,
    /// What `targets` delegates, parsed once.
    delegated: Delegations,
}

/// A role of `targets` delegations, as listed.
#[derive(Debug, Clone, Deserialize)]
pub struct Delegation {
    /// `targets/releases`, `targets/<user>`.
    pub name: String,
    /// Key ids.
    pub keyids: Vec<String>,
    /// Signatures needed.
    pub threshold: usize,
    /// Target name prefixes it may sign (`""` for all).
    #[serde(default)]
    pub paths: Vec<String>,
}

impl Delegation {
    /// Whether its `paths` allow target `name` (each is a prefix; `""` allows all).
    #[must_use]
    pub fn allows(&self, name: &str) -> bool {
        self.paths.iter().any(|p| name.starts_with(p.as_str()))
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
struct Delegations {
    #[serde(default)]
    keys: BTreeMap<String, PublicKey>,
    #[serde(default)]
    roles: Vec<Delegation>,
}

impl Repository {
    /// Verifies the chain, trusting `root.json` on first use (its own keys and threshold),
    /// at time `now` (seconds since the epoch).
    ///
    /// # Errors
    /// A role that does not parse, is not signed by its keys, has expired, or does not
    /// match what its parent lists.
    pub fn verify(served: &Served, now: i64) -> Result<Self> {
        let root = Envelope::parse("root", &served.root)?;
        root.expect_type("Root")?;
        let root_keys: BTreeMap<String, PublicKey> = root.field("keys")?;
        let roles: BTreeMap<String, RoleKeys> = root.field("roles")?;
        let role = |name: &str| {
            roles
                .get(name)
                .cloned()
                .ok_or_else(|| root.shape(format!("roles lists no {name}")))
        };
        root.verify(&root_keys, &role("root")?)?;
        root.check_expiry(now)?;

        let timestamp = Envelope::parse("timestamp", &served.timestamp)?;
        timestamp.expect_type("Timestamp")?;
        timestamp.verify(&root_keys, &role("timestamp")?)?;
        timestamp.check_expiry(now)?;

        check_meta(&timestamp, "snapshot", &served.snapshot)?;
        let snapshot = Envelope::parse("snapshot", &served.snapshot)?;
        snapshot.expect_type("Snapshot")?;
        snapshot.verify(&root_keys, &role("snapshot")?)?;
        snapshot.check_expiry(now)?;

        check_meta(&snapshot, "targets", &served.targets)?;
        let targets = Envelope::parse("targets", &served.targets)?;
        targets.expect_type("Targets")?;
        targets.verify(&root_keys, &role("targets")?)?;
        targets.check_expiry(now)?;

        let delegated = Self::delegations_of(&targets)?;
        let mut delegations = BTreeMap::new();
        for (name, bytes) in &served.delegations {
            let Some(listed) = delegated.roles.iter().find(|d| &d.name == name) else {
                continue;
            };
            check_meta(&snapshot, name, bytes)?;
            let envelope = Envelope::parse(name, bytes)?;
            envelope.expect_type("Targets")?;
            let keys = RoleKeys {
                keyids: listed.keyids.clone(),
                threshold: listed.threshold,
            };
            envelope.verify(&delegated.keys, &keys)?;
            envelope.check_expiry(now)?;
            delegations.insert(name.clone(), envelope);
        }
        Ok(Self {
            root,
            snapshot,
            targets,
            delegations,
            root_keys,
            delegated,
        })
    }

    fn delegations_of(targets: &Envelope) -> Result<Delegations> {
        let delegations: Delegations = match targets.signed.get("delegations") {
            None | Some(Value::Null) => Delegations::default(),
            Some(_) => targets.field("delegations")?,
        };
        if delegations.roles.len() > MAX_DELEGATIONS || delegations.keys.len() > MAX_DELEGATIONS {
            return Err(targets.shape(format!(
                "delegations lists {} roles and {} keys, more than {MAX_DELEGATIONS}",
                delegations.roles.len(),
                delegations.keys.len()
            )));
        }
        Ok(delegations)
    }

    /// The delegations `targets` lists (top level only).
    ///
    /// # Errors
    /// When they do not parse.
    pub fn delegation_roles(&self) -> Result<Vec<Delegation>> {
        Ok(self
            .delegated
            .roles
            .iter()
            .filter(|d| d.name.starts_with("targets/") && d.name.matches('/').count() == 1)
            .cloned()
            .collect())
    }

    /// Every key of the repository by id: root's, then the delegations' (without those
    /// whose id root already uses).
    #[must_use]
    pub fn all_keys(&self) -> BTreeMap<String, PublicKey> {
        let mut keys = self.delegated.keys.clone();
        keys.extend(self.root_keys.clone());
        keys
    }

    /// The threshold root sets for one of its roles (1 when it sets none).
    #[must_use]
    pub fn threshold_of(&self, role: &str) -> usize {
        let roles: Option<BTreeMap<String, RoleKeys>> = self.root.field("roles").ok();
        roles
            .and_then(|r| r.get(role).map(|k| k.threshold))
            .unwrap_or(1)
            .max(1)
    }

    /// Whether the snapshot lists `role`: whether the role's file exists.
    #[must_use]
    pub fn snapshot_lists(&self, role: &str) -> bool {
        self.snapshot
            .field::<BTreeMap<String, Value>>("meta")
            .is_ok_and(|meta| meta.contains_key(role))
    }

    /// The key ids that may sign `role` (root's roles from root, delegations from targets).
    #[must_use]
    pub fn keyids_of(&self, role: &str) -> Vec<String> {
        if ROOT_ROLES.contains(&role) {
            let roles: Option<BTreeMap<String, RoleKeys>> = self.root.field("roles").ok();
            return roles
                .and_then(|r| r.get(role).map(|k| k.keyids.clone()))
                .unwrap_or_default();
        }
        self.delegation_roles()
            .ok()
            .and_then(|roles| roles.into_iter().find(|d| d.name == role).map(|d| d.keyids))
            .unwrap_or_default()
    }
}

/// The most delegations (roles, and keys) `targets` may list: Docker's repositories have a
/// handful, one per signer.
pub const MAX_DELEGATIONS: usize = 1_000;

/// The roles root lists keys for.
const ROOT_ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// The three-year expiry notary's CLI gives a targets role it signs.
pub const TARGETS_EXPIRY_SECONDS: i64 = 3 * 365 * 24 * 60 * 60;

/// The role `previous` (or a new, empty targets role) with each of `tags` set to `manifest`,
/// its version bumped and a new expiry, signed by `signer` as key `keyid`: the bytes to
/// publish.
///
/// # Errors
/// A role that cannot be made canonical, or a signing failure.
pub fn sign_target(
    role: &str,
    previous: Option<&Envelope>,
    tags: &[&str],
    manifest: &[u8],
    signer: &key::SigningKey,
    keyid: &str,
    now: i64,
) -> Result<Vec<u8>> {
    let mut body = previous.map_or_else(
        || serde_json::json!({"_type": "Targets", "delegations": {"keys": {}, "roles": []}, "targets": {}, "version": 0}),
        |p| p.signed.clone(),
    );
    let version = body
        .get("version")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| TufError::Shape {
            role: role.to_owned(),
            what: "version cannot be raised".to_owned(),
        })?;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let entry = serde_json::json!({
        "hashes": {"sha256": b64(&Sha256::digest(manifest)), "sha512": b64(&Sha512::digest(manifest))},
        "length": manifest.len(),
    });
    let object = body.as_object_mut().ok_or_else(|| TufError::Shape {
        role: role.to_owned(),
        what: "signed is not an object".to_owned(),
    })?;
    if !object.get("targets").is_some_and(Value::is_object) {
        object.insert("targets".to_owned(), Value::Object(serde_json::Map::new()));
    }
    if let Some(Value::Object(targets)) = object.get_mut("targets") {
        for tag in tags {
            targets.insert((*tag).to_owned(), entry.clone());
        }
    }
    object.insert("version".to_owned(), Value::from(version));
    object.insert(
        "expires".to_owned(),
        Value::from(crate::time::format(now + TARGETS_EXPIRY_SECONDS)),
    );
    let message = canonical::to_vec(&body).map_err(|source| TufError::Canonical {
        role: role.to_owned(),
        source,
    })?;
    let sig = signer.sign(&message).map_err(|source| TufError::Sign {
        role: role.to_owned(),
        source,
    })?;
    // `signed` first, as notary's Go struct marshals it: the server hashes the envelope
    // in that form for the snapshot, and a client fetches the role by that hash
    let signatures = serde_json::json!([{"keyid": keyid, "method": signer.method(), "sig": b64(&sig)}]);
    let signatures = canonical::to_vec(&signatures).map_err(|source| TufError::Canonical {
        role: role.to_owned(),
        source,
    })?;
    let mut envelope = b"{\"signed\":".to_vec();
    envelope.extend_from_slice(&message);
    envelope.extend_from_slice(b",\"signatures\":");
    envelope.extend_from_slice(&signatures);
    envelope.push(b'}');
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_delegations_are_refused() {
        let roles: Vec<Value> = (0..=MAX_DELEGATIONS)
            .map(|i| serde_json::json!({"name": format!("targets/r{i}"), "keyids": [], "threshold": 1, "paths": [""]}))
            .collect();
        let targets = Envelope {
            role: "targets".to_owned(),
            signed: serde_json::json!({"_type": "Targets", "delegations": {"keys": {}, "roles": roles}}),
            signatures: Vec::new(),
        };
        let err = Repository::delegations_of(&targets).unwrap_err();
        assert!(err.to_string().contains("more than 1000"), "{err}");
    }

    #[test]
    fn a_version_that_cannot_be_raised_is_refused() {
        let pem = include_str!("../../tests/fixtures/notary/targets-ecdsa-pkcs8.pem");
        let key = key::SigningKey::from_pem(&crate::secret::Secret::new(pem), None).unwrap();
        let previous = Envelope {
            role: "targets".to_owned(),
            signed: serde_json::json!({"_type": "Targets", "targets": {}, "version": u64::MAX}),
            signatures: Vec::new(),
        };
        let err = sign_target("targets", Some(&previous), &["v1"], b"{}", &key, "id", 0).unwrap_err();
        assert!(matches!(err, TufError::Shape { .. }), "{err}");
    }
}
