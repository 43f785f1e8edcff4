//! Canonical JSON as Notary signs it (docker/go `canonical/json`, what notary's
//! `MarshalCanonical` writes and its verifier recomputes): object keys sorted by their
//! bytes, no whitespace, integers only, and strings escaping only `"` and `\` (control
//! characters and non-ASCII text are written as they are).

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CanonicalError {
    /// Canonical JSON has integers only.
    #[error("number {number} is not an integer, which canonical JSON cannot hold")]
    NotAnInteger {
        /// The number as written.
        number: String,
    },
}

/// The canonical bytes of `value`.
///
/// # Errors
/// When `value` holds a number that is not an integer.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let text = n.to_string();
            if text.contains(['.', 'e', 'E']) {
                return Err(CanonicalError::NotAnInteger { number: text });
            }
            out.extend_from_slice(text.as_bytes());
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for byte in text.bytes() {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canonical(value: &Value) -> String {
        String::from_utf8(to_vec(value).unwrap()).unwrap()
    }

    #[test]
    fn keys_sorted_no_whitespace() {
        let value: Value = serde_json::from_str(
            r#"{ "signed": {"version": 3, "_type": "Targets", "expires": "2029-12-01T00:00:00Z",
                  "targets": {"v2": {"length": 525, "hashes": {"sha256": "qq=="}}},
                  "delegations": {"roles": [], "keys": {}}} }"#,
        )
        .unwrap();
        assert_eq!(
            canonical(&value),
            r#"{"signed":{"_type":"Targets","delegations":{"keys":{},"roles":[]},"expires":"2029-12-01T00:00:00Z","targets":{"v2":{"hashes":{"sha256":"qq=="},"length":525}},"version":3}}"#
        );
    }

    #[test]
    fn strings_escape_only_quote_and_backslash() {
        assert_eq!(canonical(&json!("a\"b\\c")), r#""a\"b\\c""#);
        assert_eq!(canonical(&json!("tab\there\nnl")), "\"tab\there\nnl\"");
        assert_eq!(canonical(&json!("é ✓")), "\"é ✓\"");
        assert_eq!(
            canonical(&json!({"b": null, "a": [true, false, -7]})),
            r#"{"a":[true,false,-7],"b":null}"#
        );
    }

    #[test]
    fn byte_order_not_locale_order() {
        // uppercase sorts before lowercase, `_` between them
        assert_eq!(
            canonical(&json!({"b": 1, "_": 2, "B": 3, "a": 4})),
            r#"{"B":3,"_":2,"a":4,"b":1}"#
        );
    }

    #[test]
    fn floats_are_refused() {
        let value: Value = serde_json::from_str(r#"{"n": 1.5}"#).unwrap();
        assert!(matches!(to_vec(&value), Err(CanonicalError::NotAnInteger { .. })));
        let value: Value = serde_json::from_str(r#"{"n": 1e3}"#).unwrap();
        assert!(to_vec(&value).is_err());
        let big: Value = serde_json::from_str("18446744073709551616").unwrap();
        assert_eq!(canonical(&big), "18446744073709551616");
    }
}
