//! Fixture messages for `invoke` and `dev`: JSON Lines files (one object of
//! fields per line, in order) and `--field NAME=VALUE` flags.

use std::path::Path;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};

use super::BadInput;

/// Most fixture lines read from one file.
const MAX_FIXTURES: usize = 10_000;
/// Largest fixture file read.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// One message's fields, in order, and where it came from (for output).
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// `(name, value)` in the order written.
    pub fields: Vec<(String, Vec<u8>)>,
    /// `FILE:LINE` or `--field`.
    pub origin: String,
}

/// A field value: a string (its UTF-8 bytes) or `{"hex": "..."}` (any bytes).
#[derive(Deserialize)]
#[serde(untagged)]
enum Value {
    Text(String),
    Hex {
        /// The bytes as hex digits.
        hex: String,
    },
}

/// The fields of one line, in the order written (a map would sort them).
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"an object of fields, e.g. {"data": "{\"order_id\": 1}"}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(Ordered)
    }
}

/// Reads a JSON Lines fixture file; blank lines and lines starting with `//` are skipped.
pub fn read(path: &Path) -> anyhow::Result<Vec<Fixture>> {
    let bad = |reason: String| BadInput(format!("fixtures {}: {reason}", path.display()));
    let size = std::fs::metadata(path)
        .map_err(|e| bad(format!("cannot read: {e}")))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(bad(format!("{size} bytes; at most {MAX_FILE_BYTES} are read")).into());
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if out.len() == MAX_FIXTURES {
            return Err(bad(format!("more than {MAX_FIXTURES} messages")).into());
        }
        let Fields(fields) =
            serde_json::from_str(line).map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
        let fields = fields
            .into_iter()
            .map(|(name, value)| {
                Ok((
                    name.clone(),
                    bytes(value)
                        .map_err(|r| bad(format!("line {}, field {name:?}: {r}", n + 1)))?,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if fields.is_empty() {
            return Err(bad(format!(
                "line {}: a message needs at least one field",
                n + 1
            ))
            .into());
        }
        out.push(Fixture {
            fields,
            origin: format!("{}:{}", path.display(), n + 1),
        });
    }
    if out.is_empty() {
        return Err(bad("no messages in the file".into()).into());
    }
    Ok(out)
}

fn bytes(value: Value) -> Result<Vec<u8>, String> {
    match value {
        Value::Text(text) => Ok(text.into_bytes()),
        Value::Hex { hex } => {
            hex::decode(&hex).map_err(|e| format!("{{\"hex\": ...}} is not hex: {e}"))
        }
    }
}

/// A message from `--field NAME=VALUE` flags (the value as UTF-8).
pub fn from_flags(flags: &[String]) -> anyhow::Result<Fixture> {
    let fields = flags
        .iter()
        .map(|flag| match flag.split_once('=') {
            Some((name, value)) if !name.is_empty() => {
                Ok((name.to_owned(), value.as_bytes().to_vec()))
            }
            _ => Err(BadInput(format!(
                "--field {flag:?}: expected NAME=VALUE with a non-empty NAME"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Fixture {
        fields,
        origin: "--field".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_field_order_and_hex_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(
            &path,
            "{\"z\": \"1\", \"a\": {\"hex\": \"00ff\"}}\n\n// note\n{\"data\": \"x\"}\n",
        )
        .unwrap();
        let got = read(&path).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0].fields,
            [("z".into(), b"1".to_vec()), ("a".into(), vec![0, 0xff])]
        );
        assert_eq!(got[1].origin, format!("{}:4", path.display()));
    }

    #[test]
    fn bad_lines_and_flags_name_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, "{\"a\": \"1\"}\n[1]\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, "{\"a\": {\"hex\": \"zz\"}}\n").unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("field \"a\"") && err.contains("not hex"),
            "{err}"
        );
        let err = from_flags(&["novalue".into()]).unwrap_err().to_string();
        assert!(err.contains("NAME=VALUE"), "{err}");
        assert_eq!(
            from_flags(&["a=b=c".into()]).unwrap().fields,
            [("a".into(), b"b=c".to_vec())]
        );
    }
}
