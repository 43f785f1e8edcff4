//! Signing pushed tags in Notary as Docker does, in two halves: [`Signer::prepare`] before
//! anything is pushed (fetch and verify the trust data, check that the server signs
//! snapshots, that the key is the one named and may sign every tag, and choose its
//! roles), and [`Signer::publish`] after (sign the chosen roles anew with the tags set to
//! the pushed manifest, publish them, and read the result back through the verified
//! chain).
//!
//! The roles chosen are Docker's (`docker/cli` `GetSignableRoles`): `targets` when the
//! repository has no delegations, else every delegation directly under `targets` that
//! lists the key and whose paths allow the tag.

use super::client::{self, Client};
use super::key::{self, SigningKey};
use super::tuf::{self, Envelope, PublicKey, Repository, Served, TufError};

/// The most roles one push signs: a repository rarely has more than `targets/releases`
/// and a signer's own; past this the server is playing games.
pub const MAX_SIGNED_ROLES: usize = 16;

/// Times one signing is published when the server refuses it as stale (another writer
/// published in between): each time the trust data is read again and the roles signed
/// anew.
pub const PUBLISH_ATTEMPTS: usize = 5;

/// Why signing cannot be done, or was not.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The notary server failed.
    #[error(transparent)]
    Client(#[from] client::Error),
    /// No `root.json`: nobody initialised the GUN.
    #[error(
        "{gun} has no trust data on {server} (root.json: 404 Not Found); its owner initialises it once, \
         with the notary CLI (`notary -s {server} init {gun} -p`, then `notary -s {server} key rotate {gun} snapshot -r`) \
         or with Docker (`docker trust signer add --key <cert.pem> <signer> <image>`, or a first push with DOCKER_CONTENT_TRUST=1)"
    )]
    NotInitialised {
        /// The GUN.
        gun: String,
        /// The server.
        server: String,
    },
    /// `root.json` exists, another role does not.
    #[error("{gun} on {server} has root.json but no {role}.json")]
    Missing {
        /// The GUN.
        gun: String,
        /// The server.
        server: String,
        /// The role.
        role: String,
    },
    /// The chain does not verify.
    #[error("the trust data of {gun} on {server} does not verify")]
    Tuf {
        /// The GUN.
        gun: String,
        /// The server.
        server: String,
        /// Why.
        #[source]
        source: TufError,
    },
    /// A role of the chain is past its expiry.
    #[error(
        "{role}.json of {gun} on {server} expired at {expires}; {}",
        expired_hint(role, gun, server)
    )]
    Expired {
        /// The GUN.
        gun: String,
        /// The server.
        server: String,
        /// The role.
        role: String,
        /// When.
        expires: String,
    },
    /// A tag that `targets` lists for another manifest, where we sign delegations only.
    #[error(
        "tag {tag} of {gun} is also signed in targets, for another digest, and notary list (like every client \
         that reads targets first) would keep trusting that one over a delegation's signature; remove it once \
         with the repository's targets key (`notary -s {server} remove {gun} {tag} -p`), or sign with that key"
    )]
    Shadowed {
        /// The tag.
        tag: String,
        /// The GUN.
        gun: String,
        /// The server.
        server: String,
    },
    /// The snapshot is signed by a client's key, which this resource does not hold.
    #[error(
        "{server} does not sign the snapshots of {gun}: its snapshot key is held by a client, and this resource \
         signs only targets; hand the snapshot key to the server once, as the owner of the root key: \
         `notary -s {server} key rotate {gun} snapshot -r`"
    )]
    ClientSnapshot {
        /// The GUN.
        gun: String,
        /// The server.
        server: String,
    },
    /// `repository_key_id` is not the key's id.
    #[error("content_trust.repository_key_id {given} is not the id of content_trust.repository_key: its id is {actual}")]
    KeyId {
        /// The id given.
        given: String,
        /// The key's ids (canonical, and as the trust data lists it).
        actual: String,
    },
    /// No delegations, and the key is not the targets key.
    #[error(
        "key {key_id} may not sign the targets of {gun}: they are signed by {listed}, and the repository has no \
         delegations; give the repository's targets key, or add this key as a signer \
         (`docker trust signer add` or `notary delegation add {gun} targets/releases <cert.pem> --all-paths`){hint}"
    )]
    NotTargetsKey {
        /// Our key's id.
        key_id: String,
        /// The GUN.
        gun: String,
        /// The ids that may.
        listed: String,
        /// What the key's PEM says about itself.
        hint: String,
    },
    /// Delegations, and none lists the key with paths allowing the tag.
    #[error(
        "key {key_id} may not sign tag {tag} of {gun}: no delegation lists it with paths allowing the tag \
         (delegations: {delegations}); add it as a signer \
         (`docker trust signer add` or `notary delegation add {gun} targets/releases <cert.pem> --all-paths`){hint}"
    )]
    NoDelegation {
        /// Our key's id.
        key_id: String,
        /// The tag.
        tag: String,
        /// The GUN.
        gun: String,
        /// The delegations, with their keys and paths.
        delegations: String,
        /// What the key's PEM says about itself.
        hint: String,
    },
    /// A role needs more signatures than one key makes.
    #[error("{role} of {gun} needs {threshold} signatures, and this resource signs with one key")]
    Threshold {
        /// The role.
        role: String,
        /// The GUN.
        gun: String,
        /// Signatures needed.
        threshold: usize,
    },
    /// More roles to sign than [`MAX_SIGNED_ROLES`].
    #[error("the key may sign {count} roles of {gun}, more than {MAX_SIGNED_ROLES}")]
    TooManyRoles {
        /// The GUN.
        gun: String,
        /// How many.
        count: usize,
    },
    /// A role could not be signed.
    #[error("sign {role}")]
    Sign {
        /// The role.
        role: String,
        /// Why.
        #[source]
        source: TufError,
    },
    /// The server refused what we published.
    #[error("the notary server {server} refused the new trust data of {gun}")]
    Publish {
        /// The GUN.
        gun: String,
        /// The server.
        server: String,
        /// Why.
        #[source]
        source: client::Error,
    },
    /// Published, but what the server serves now does not sign the tag.
    #[error("{server} accepted the new trust data of {gun}, but its verified {role} does not list {tag} with the pushed manifest")]
    NotApplied {
        /// The GUN.
        gun: String,
        /// The server.
        server: String,
        /// The role.
        role: String,
        /// The tag.
        tag: String,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about an expired role.
fn expired_hint(role: &str, gun: &str, server: &str) -> String {
    match role {
        "timestamp" | "snapshot" => {
            format!("the server signs {role} itself and should have renewed it: check {server}'s clock and logs")
        }
        "root" => format!(
            "its owner re-signs it with the root key of {gun} (the notary CLI does when a key is rotated, `notary -s {server} key rotate {gun} targets -p`)"
        ),
        _ => format!("its owner renews it once: `notary -s {server} witness {gun} {role} -p`"),
    }
}

/// A repository key, the id it was named by, and the GUN's server.
#[derive(Debug)]
pub struct Signer {
    client: Client,
    key: SigningKey,
    given_id: String,
}

/// What [`Signer::prepare`] found: the verified trust data and the roles to sign.
#[derive(Debug)]
pub struct Plan {
    repository: Repository,
    roles: Vec<RolePlan>,
}

#[derive(Debug, Clone)]
struct RolePlan {
    role: String,
    keyid: String,
    tags: Vec<String>,
}

impl Plan {
    /// The roles that will be signed.
    #[must_use]
    pub fn roles(&self) -> Vec<&str> {
        self.roles.iter().map(|r| r.role.as_str()).collect()
    }

    /// The tags that will be signed, each once, in the order given.
    #[must_use]
    pub fn tags(&self) -> Vec<&str> {
        let mut tags: Vec<&str> = Vec::new();
        for tag in self.roles.iter().flat_map(|r| r.tags.iter()) {
            if !tags.contains(&tag.as_str()) {
                tags.push(tag);
            }
        }
        tags
    }
}

impl Signer {
    /// `key`, named `given_id` by the user, for the GUN of `client`.
    #[must_use]
    pub fn new(client: Client, key: SigningKey, given_id: &str) -> Self {
        Self {
            client,
            key,
            given_id: given_id.trim().to_ascii_lowercase(),
        }
    }

    /// The GUN.
    #[must_use]
    pub fn gun(&self) -> &str {
        self.client.gun()
    }

    /// The server, `https://host[:port]`.
    #[must_use]
    pub fn server(&self) -> String {
        self.client.server()
    }

    /// `text` without the secrets of the connection.
    #[must_use]
    pub fn scrub(&self, text: String) -> String {
        self.client.scrub(text)
    }

    /// Everything that can be known before pushing `manifest` (its exact bytes): the
    /// verified trust data, a server that signs snapshots, the key's id, the roles that
    /// will sign `tags`, and no other signature of a tag that clients read first; `now` is
    /// seconds since the epoch.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn prepare(&self, tags: &[&str], manifest: &[u8], now: i64) -> Result<Plan> {
        let mut served = self.fetch(&[]).await?;
        let repository = self.verify(&served, now)?;
        self.check_snapshot(&repository).await?;
        self.check_key_id(&repository)?;
        let roles = self.choose(&repository, tags)?;
        self.check_shadow(&repository, &roles, manifest)?;
        let existing: Vec<String> = roles
            .iter()
            .filter(|r| r.role != "targets" && repository.snapshot_lists(&r.role))
            .map(|r| r.role.clone())
            .collect();
        if existing.is_empty() {
            return Ok(Plan { repository, roles });
        }
        for role in existing {
            let bytes = self.listed(&served.snapshot, &role).await?;
            served.delegations.push((role, bytes));
        }
        let repository = self.verify(&served, now)?;
        Ok(Plan { repository, roles })
    }

    /// Signs the plan's roles with its tags set to `manifest` (the exact bytes pushed),
    /// publishes them, and checks that the server's verified trust data now lists them.
    /// A publish the server refuses as invalid (400: most often stale, because another
    /// writer published since the trust data was read) is prepared afresh and made again,
    /// [`PUBLISH_ATTEMPTS`] times in all.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn publish(&self, plan: &Plan, manifest: &[u8], now: i64) -> Result<()> {
        let tags: Vec<String> = plan.tags().into_iter().map(str::to_owned).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        let mut replanned: Option<Plan> = None;
        let mut attempt = 1;
        loop {
            let result = self
                .publish_once(replanned.as_ref().unwrap_or(plan), manifest, now)
                .await;
            match result {
                Err(Error::Publish { source, .. }) if attempt < PUBLISH_ATTEMPTS && is_refusal(&source) => {
                    tracing::warn!(
                        "{} refused the new trust data ({}); reading it again and signing anew (attempt {} of {PUBLISH_ATTEMPTS})",
                        self.server(),
                        self.scrub(source.to_string()),
                        attempt + 1
                    );
                    replanned = Some(self.prepare(&tags, manifest, now).await?);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn publish_once(&self, plan: &Plan, manifest: &[u8], now: i64) -> Result<()> {
        let mut files = Vec::new();
        for role in &plan.roles {
            let previous: Option<&Envelope> = if role.role == "targets" {
                Some(&plan.repository.targets)
            } else {
                plan.repository.delegations.get(&role.role)
            };
            let tags: Vec<&str> = role.tags.iter().map(String::as_str).collect();
            let bytes = tuf::sign_target(&role.role, previous, &tags, manifest, &self.key, &role.keyid, now)
                .map_err(|source| Error::Sign {
                    role: role.role.clone(),
                    source,
                })?;
            files.push((role.role.clone(), bytes));
        }
        tracing::debug!("publishing {} to {}", plan.roles().join(", "), self.server());
        self.client
            .publish(&files)
            .await
            .map_err(|source| Error::Publish {
                gun: self.gun().to_owned(),
                server: self.server(),
                source,
            })?;
        self.confirm(plan, manifest, now).await
    }

    /// Reads the trust data back and checks every tag is listed with `manifest`.
    async fn confirm(&self, plan: &Plan, manifest: &[u8], now: i64) -> Result<()> {
        let delegations: Vec<&str> = plan
            .roles
            .iter()
            .map(|r| r.role.as_str())
            .filter(|r| *r != "targets")
            .collect();
        let served = self.fetch(&delegations).await?;
        let repository = self.verify(&served, now)?;
        let sha256 = sha256_b64(manifest);
        for role in &plan.roles {
            let envelope = if role.role == "targets" {
                Some(&repository.targets)
            } else {
                repository.delegations.get(&role.role)
            };
            for tag in &role.tags {
                let matches = lists(envelope, tag, manifest.len(), &sha256) == Some(true)
                    && lists(Some(&repository.targets), tag, manifest.len(), &sha256) != Some(false);
                if !matches {
                    return Err(Error::NotApplied {
                        gun: self.gun().to_owned(),
                        server: self.server(),
                        role: role.role.clone(),
                        tag: tag.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// root, timestamp, snapshot, targets and the `delegations` named.
    async fn fetch(&self, delegations: &[&str]) -> Result<Served> {
        let root = self
            .client
            .role("root")
            .await?
            .ok_or_else(|| Error::NotInitialised {
                gun: self.gun().to_owned(),
                server: self.server(),
            })?;
        let timestamp = self.required("timestamp").await?;
        let snapshot = self.listed(&timestamp, "snapshot").await?;
        let targets = self.listed(&snapshot, "targets").await?;
        let mut served = Served {
            root,
            timestamp,
            snapshot,
            targets,
            delegations: Vec::new(),
        };
        for role in delegations {
            let bytes = self.listed(&served.snapshot, role).await?;
            served.delegations.push(((*role).to_owned(), bytes));
        }
        Ok(served)
    }

    /// `role` as its parent (timestamp for snapshot, snapshot for the rest) lists it: by
    /// the sha256 listed (`<role>.<hex>.json`), so that a publish by another writer
    /// between two reads cannot pair a snapshot with a newer role; by name when the parent
    /// lists no hash or the server keeps no such file. The chain check still verifies it.
    async fn listed(&self, parent: &[u8], role: &str) -> Result<Vec<u8>> {
        if let Some(hex) = listed_sha256(parent, role) {
            if let Some(bytes) = self.client.role(&format!("{role}.{hex}")).await? {
                return Ok(bytes);
            }
        }
        self.required(role).await
    }

    async fn required(&self, role: &str) -> Result<Vec<u8>> {
        self.client.role(role).await?.ok_or_else(|| Error::Missing {
            gun: self.gun().to_owned(),
            server: self.server(),
            role: role.to_owned(),
        })
    }

    fn verify(&self, served: &Served, now: i64) -> Result<Repository> {
        Repository::verify(served, now).map_err(|source| match source {
            TufError::Expired { role, expires } => Error::Expired {
                gun: self.gun().to_owned(),
                server: self.server(),
                role,
                expires,
            },
            source => Error::Tuf {
                gun: self.gun().to_owned(),
                server: self.server(),
                source,
            },
        })
    }

    /// Fails when a tag signed into delegations only is also in `targets` for another
    /// manifest: `notary list` and notary's own look-ups read `targets` first, and would
    /// go on trusting that one.
    fn check_shadow(&self, repository: &Repository, roles: &[RolePlan], manifest: &[u8]) -> Result<()> {
        if roles.iter().any(|r| r.role == "targets") {
            return Ok(());
        }
        let sha256 = sha256_b64(manifest);
        for tag in roles.iter().flat_map(|r| r.tags.iter()) {
            if lists(Some(&repository.targets), tag, manifest.len(), &sha256) == Some(false) {
                return Err(Error::Shadowed {
                    tag: tag.clone(),
                    gun: self.gun().to_owned(),
                    server: self.server(),
                });
            }
        }
        Ok(())
    }

    /// Fails unless the key the server signs snapshots with is root's snapshot key.
    async fn check_snapshot(&self, repository: &Repository) -> Result<()> {
        let served = self.client.server_key("snapshot").await?;
        let id = key::listed_key_id(&served.keytype, &served.keyval.public);
        if id.is_some_and(|id| repository.keyids_of("snapshot").contains(&id)) {
            return Ok(());
        }
        Err(Error::ClientSnapshot {
            gun: self.gun().to_owned(),
            server: self.server(),
        })
    }

    /// Whether `listed` (listed under `id`) is our key, and `id` really is its id.
    fn is_ours(&self, id: &str, listed: &PublicKey) -> bool {
        self.key.is_listed_as(&listed.keytype, &listed.keyval.public)
            && key::listed_key_id(&listed.keytype, &listed.keyval.public).as_deref() == Some(id)
    }

    /// Fails unless the id given is the key's canonical id, or one the trust data lists
    /// the key under (the id of its certificate).
    fn check_key_id(&self, repository: &Repository) -> Result<()> {
        let canonical = self.key.key_id();
        if self.given_id == canonical {
            return Ok(());
        }
        let mut listed: Vec<String> = self
            .our_ids(repository)
            .into_iter()
            .filter(|id| *id != canonical)
            .collect();
        listed.sort();
        if listed.contains(&self.given_id) {
            return Ok(());
        }
        let mut actual = canonical;
        if !listed.is_empty() {
            actual = format!("{actual} (listed in the trust data as {})", listed.join(", "));
        }
        Err(Error::KeyId {
            given: self.given_id.clone(),
            actual,
        })
    }

    /// The ids the trust data lists our key under (each checked to be the id of what it
    /// lists), found once: a role's key ids are then only looked up.
    fn our_ids(&self, repository: &Repository) -> std::collections::HashSet<String> {
        repository
            .all_keys()
            .into_iter()
            .filter(|(id, k)| self.is_ours(id, k))
            .map(|(id, _)| id)
            .collect()
    }

    /// What the key's PEM headers say, when they do not match: for the messages.
    fn hint(&self) -> String {
        match (self.key.role(), self.key.gun()) {
            (_, Some(gun)) if gun != self.gun() => {
                format!("; the key's PEM says it is for {gun}, not {}", self.gun())
            }
            (Some("root"), _) => "; the key's PEM says it is the root key, which never signs tags".to_owned(),
            _ => String::new(),
        }
    }

    /// The roles that sign `tags`, Docker's way.
    fn choose(&self, repository: &Repository, tags: &[&str]) -> Result<Vec<RolePlan>> {
        let gun = self.gun().to_owned();
        let our_id = self.key.key_id();
        let ours = self.our_ids(repository);
        let our_keyid = |keyids: &[String]| keyids.iter().find(|id| ours.contains(*id)).cloned();
        let delegations = repository.delegation_roles().map_err(|source| Error::Tuf {
            gun: gun.clone(),
            server: self.server(),
            source,
        })?;
        if delegations.is_empty() {
            let keyids = repository.keyids_of("targets");
            let Some(listed_id) = our_keyid(&keyids) else {
                return Err(Error::NotTargetsKey {
                    key_id: our_id,
                    gun,
                    listed: shown_list(keyids.iter().cloned()),
                    hint: self.hint(),
                });
            };
            let threshold = repository.threshold_of("targets");
            if threshold > 1 {
                return Err(Error::Threshold {
                    role: "targets".to_owned(),
                    gun,
                    threshold,
                });
            }
            return Ok(vec![RolePlan {
                role: "targets".to_owned(),
                keyid: listed_id,
                tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            }]);
        }
        let mut roles = Vec::new();
        for delegation in &delegations {
            if !is_safe_role_name(&delegation.name) {
                tracing::debug!(
                    "skipping delegation {:?}: not a role name we publish",
                    delegation.name
                );
                continue;
            }
            let Some(listed_id) = our_keyid(&delegation.keyids) else {
                continue;
            };
            let allowed: Vec<String> = tags
                .iter()
                .filter(|t| delegation.allows(t))
                .map(|t| (*t).to_owned())
                .collect();
            if allowed.is_empty() {
                continue;
            }
            if delegation.threshold > 1 {
                return Err(Error::Threshold {
                    role: delegation.name.clone(),
                    gun,
                    threshold: delegation.threshold,
                });
            }
            roles.push(RolePlan {
                role: delegation.name.clone(),
                keyid: listed_id,
                tags: allowed,
            });
        }
        if let Some(tag) = tags
            .iter()
            .find(|t| !roles.iter().any(|r| r.tags.iter().any(|x| x == *t)))
        {
            let listed = shown_list(
                delegations
                    .iter()
                    .map(|d| format!("{} (keys {}; paths {:?})", d.name, d.keyids.join(", "), d.paths)),
            );
            let mut hint = self.hint();
            let targets_keys = repository.keyids_of("targets");
            if our_keyid(&targets_keys).is_some() {
                hint.push_str(
                    "; the key is the repository's targets key, and with delegations present Docker (and this \
                     resource) signs only into delegations",
                );
            }
            return Err(Error::NoDelegation {
                key_id: our_id,
                tag: (*tag).to_owned(),
                gun,
                delegations: listed,
                hint,
            });
        }
        if roles.len() > MAX_SIGNED_ROLES {
            return Err(Error::TooManyRoles {
                gun,
                count: roles.len(),
            });
        }
        Ok(roles)
    }
}

/// Whether `envelope` lists `tag` as the manifest of `length` bytes and base64 `sha256`:
/// `None` when it does not list the tag at all.
fn lists(envelope: Option<&Envelope>, tag: &str, length: usize, sha256: &str) -> Option<bool> {
    let entry = envelope?.signed.get("targets")?.get(tag)?;
    Some(
        entry.get("length").and_then(serde_json::Value::as_u64) == Some(length as u64)
            && entry
                .pointer("/hashes/sha256")
                .and_then(serde_json::Value::as_str)
                == Some(sha256),
    )
}

/// The hex sha256 that the metadata `parent` lists for `role` in its `meta`, if any.
fn listed_sha256(parent: &[u8], role: &str) -> Option<String> {
    use base64::Engine as _;
    let parent: serde_json::Value = serde_json::from_slice(parent).ok()?;
    let b64 = parent
        .get("signed")?
        .get("meta")?
        .get(role)?
        .get("hashes")?
        .get("sha256")?
        .as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    (raw.len() == 32).then(|| hex::encode(raw))
}

/// The base64 SHA-256 of `bytes`, as targets list it.
fn sha256_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(bytes))
}

/// How many delegations or keys a message lists before "and N more".
pub const LISTED_IN_MESSAGES: usize = 8;

/// At most [`LISTED_IN_MESSAGES`] of `items`, each quoted with escapes and cut at 200
/// characters (they come from the server), then how many more there are.
fn shown_list(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    let mut shown: Vec<String> = items
        .iter()
        .take(LISTED_IN_MESSAGES)
        .map(|i| format!("{:?}", i.chars().take(200).collect::<String>()))
        .collect();
    if items.len() > LISTED_IN_MESSAGES {
        shown.push(format!("and {} more", items.len() - LISTED_IN_MESSAGES));
    }
    if shown.is_empty() {
        return "none".to_owned();
    }
    shown.join(", ")
}

/// Whether the server refused a publish as invalid (400), as it refuses a stale one.
fn is_refusal(error: &client::Error) -> bool {
    matches!(error, client::Error::Http(e) if e.status() == Some(reqwest::StatusCode::BAD_REQUEST))
}

/// `targets/<name>` of letters, digits, `_`, `-` and `.` (not `.` or `..`): what the
/// publish request can name safely.
fn is_safe_role_name(role: &str) -> bool {
    role.strip_prefix("targets/").is_some_and(|name| {
        !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for good in ["targets/releases", "targets/alice", "targets/ci-bot.2"] {
            assert!(is_safe_role_name(good), "{good}");
        }
        for bad in [
            "targets",
            "targets/",
            "targets/..",
            "targets/a/b",
            "targets/a\"b",
            "targets/a\r\n",
            "root",
        ] {
            assert!(!is_safe_role_name(bad), "{bad}");
        }
    }
}
