//! `Secret`: a string that never shows up in `Debug` output or logs.
//!
//! Passwords, tokens, AWS keys and notary passphrases are wrapped in it as soon as they are
//! parsed, so a `{:?}` anywhere (debug logs, error chains) prints `<redacted>`.

use serde::{Deserialize, Deserializer};

/// A secret string: `Debug` prints `<redacted>`, and there is no `Display`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a string.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it (an `Authorization` header).
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The forms in which a server may echo `secret` back: as it is, percent-encoded (either
/// case, `+` or `%20` for a space), JSON-escaped (as is, and ASCII-only with `\uXXXX` in
/// either case, `<>&` included, as Go and Python write it), and base64 (standard and
/// URL-safe, with and without padding). Messages that carry a server's words are scrubbed
/// of all of them.
#[must_use]
pub fn echoed_forms(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use std::fmt::Write as _;
    let mut forms = vec![secret.to_owned()];
    for upper in [true, false] {
        for plus in [true, false] {
            let mut encoded = String::new();
            for b in secret.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    encoded.push(char::from(b));
                } else if b == b' ' && plus {
                    encoded.push('+');
                } else if upper {
                    let _ = write!(encoded, "%{b:02X}");
                } else {
                    let _ = write!(encoded, "%{b:02x}");
                }
            }
            forms.push(encoded);
        }
        let mut ascii = String::new();
        for c in secret.chars() {
            match c {
                '"' => ascii.push_str("\\\""),
                '\\' => ascii.push_str("\\\\"),
                c if c.is_ascii() && !c.is_ascii_control() && !"<>&".contains(c) => ascii.push(c),
                c => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        if upper {
                            let _ = write!(ascii, "\\u{unit:04X}");
                        } else {
                            let _ = write!(ascii, "\\u{unit:04x}");
                        }
                    }
                }
            }
        }
        forms.push(ascii);
    }
    if let Ok(json) = serde_json::to_string(secret) {
        let inner = json.strip_prefix('"').and_then(|j| j.strip_suffix('"'));
        forms.extend(inner.map(str::to_owned));
    }
    forms.push(secret.replace('/', "\\/"));
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        forms.push(engine.encode(secret));
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

/// Shorter secrets are not redacted: four characters would match ordinary words.
const SHORTEST_REDACTED: usize = 4;

/// Every form in which a set of secrets may come back from a server ([`echoed_forms`]),
/// computed once as each secret is added, longest first so no form is cut by a shorter one.
#[derive(Default)]
pub struct Echoes(Vec<String>);

impl Echoes {
    /// Adds `secret`'s forms.
    pub fn add(&mut self, secret: &str) {
        if secret.len() < SHORTEST_REDACTED {
            return;
        }
        for form in echoed_forms(secret) {
            if form.len() >= SHORTEST_REDACTED && !self.0.contains(&form) {
                self.0.push(form);
            }
        }
        self.0.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }

    /// `text` with every form replaced by `<redacted>`.
    #[must_use]
    pub fn scrub(&self, text: String) -> String {
        self.0
            .iter()
            .fold(text, |text, form| text.replace(form.as_str(), "<redacted>"))
    }
}

impl std::fmt::Debug for Echoes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Echoes({} forms)", self.0.len())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// Takes a string; refuses anything else without quoting it, since a password given as a
/// JSON number would otherwise appear in the error message.
struct SecretVisitor;

impl<'de> serde::de::Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other("a boolean"), &self))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other("a number"), &self))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other("a number"), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(E::invalid_type(serde::de::Unexpected::Other("a number"), &self))
    }

    // serde_json's `arbitrary_precision` hands numbers over as a one-entry map
    fn visit_map<A: serde::de::MapAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(serde::de::Error::invalid_type(
            serde::de::Unexpected::Other("a number or an object"),
            &self,
        ))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<Secret, A::Error> {
        Err(serde::de::Error::invalid_type(serde::de::Unexpected::Seq, &self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_that_is_not_a_string_is_not_quoted() {
        for json in ["123456789", "1.5e9", "true"] {
            let err = serde_json::from_str::<Secret>(json).unwrap_err().to_string();
            assert!(err.contains("expected a string"), "{err}");
            assert!(
                !err.contains("123456789") && !err.contains("1.5") && !err.contains("true"),
                "{err}"
            );
        }
    }

    #[test]
    fn echoed_forms_cover_what_servers_write() {
        let forms = echoed_forms("p@ss w/rd+hunter2%é\"");
        for expected in [
            "p@ss w/rd+hunter2%é\"",
            "p%40ss%20w%2Frd%2Bhunter2%25%C3%A9%22",
            "p%40ss+w%2frd%2bhunter2%25%c3%a9%22",
            "p@ss w/rd+hunter2%\\u00e9\\\"",
            "p@ss w/rd+hunter2%\\u00E9\\\"",
            "p@ss w/rd+hunter2%é\\\"",
            "cEBzcyB3L3JkK2h1bnRlcjIlw6ki",
        ] {
            assert!(forms.iter().any(|f| f == expected), "{expected} not in {forms:?}");
        }
        assert!(
            forms.windows(2).all(|w| w[0].len() >= w[1].len()),
            "longest first"
        );
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2");
    }
}
