//! Stream entries as read from Redis, parsed straight from replies without
//! intermediate maps (field order and binary names and values are kept). This
//! file parses redis-rs reply values (claims, retries); the reader's hot path
//! parses reply bytes instead ([`super::resp`]).

use redis::Value;

use crate::plugin::Field;

/// One field as Redis stores it: name and value are both binary. Names are
/// kept as bytes everywhere the host stores or replays them; only the handler
/// sees them as strings ([`to_wit_fields`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawField {
    /// The field name, byte for byte.
    pub name: Vec<u8>,
    /// The value, byte for byte.
    pub value: Vec<u8>,
}

/// One entry to hand to a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry id.
    pub id: String,
    /// The fields, or `None` when the entry was deleted or trimmed while pending.
    pub fields: Option<Vec<RawField>>,
    /// 1-based delivery attempt, as Redis counts deliveries.
    pub attempt: u32,
}

pub use crate::error::ReplyError;

fn unexpected(what: &str, v: &Value) -> ReplyError {
    ReplyError(format!("expected {what}, got {v:?}"))
}

/// `[id, [f1, v1, ...] | nil]` → an entry.
pub fn parse_entry(v: Value, attempt: u32) -> Result<Entry, ReplyError> {
    let Value::Array(pair) = v else {
        return Err(unexpected("[id, fields]", &v));
    };
    let mut pair = pair.into_iter();
    let id = match pair.next() {
        Some(Value::BulkString(b)) => {
            String::from_utf8(b).map_err(|_| ReplyError("entry id is not UTF-8".into()))?
        }
        Some(Value::SimpleString(s)) => s,
        other => return Err(ReplyError(format!("expected an entry id, got {other:?}"))),
    };
    let fields = match pair.next() {
        None | Some(Value::Nil) => None,
        Some(Value::Array(flat)) => Some(parse_fields(flat)?),
        Some(Value::Map(pairs)) => Some(
            pairs
                .into_iter()
                .map(|(n, v)| {
                    Ok(RawField {
                        name: bytes(n)?,
                        value: bytes(v)?,
                    })
                })
                .collect::<Result<_, ReplyError>>()?,
        ),
        Some(other) => return Err(unexpected("entry fields", &other)),
    };
    Ok(Entry {
        id,
        fields,
        attempt,
    })
}

fn parse_fields(flat: Vec<Value>) -> Result<Vec<RawField>, ReplyError> {
    if !flat.len().is_multiple_of(2) {
        return Err(ReplyError("odd number of field names and values".into()));
    }
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(n), Some(v)) = (it.next(), it.next()) {
        fields.push(RawField {
            name: bytes(n)?,
            value: bytes(v)?,
        });
    }
    Ok(fields)
}

/// A field name that WIT 0.1 cannot carry: its `field.name` is a `string`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "field {index} has a name that is not UTF-8 ({name}); WIT 0.1 carries field names as \
     strings, so the entry was not handed to the handler"
)]
pub struct NameNotUtf8 {
    /// 0-based position of the first such field.
    pub index: usize,
    /// The name, escaped for display (`\xff`).
    pub name: String,
}

/// The fields as the handler sees them. A name that is not UTF-8 cannot be
/// passed on without changing it, and changing it would merge `k\xff` and
/// `k\xfe` or make the handler see what no producer wrote: such an entry is
/// refused as a whole (the caller dead-letters it, bytes intact).
pub fn to_wit_fields(fields: Vec<RawField>) -> Result<Vec<Field>, (Vec<RawField>, NameNotUtf8)> {
    // Each name validated once, as it becomes a `String`; fields in and out
    // have one layout, so the vector is converted in place (no allocation
    // per entry). Names that are not UTF-8 are kept aside, to put back.
    let mut refused: Vec<(usize, Vec<u8>)> = Vec::new();
    let converted: Vec<Field> = fields
        .into_iter()
        .enumerate()
        .map(|(index, f)| Field {
            name: String::from_utf8(f.name).unwrap_or_else(|e| {
                refused.push((index, e.into_bytes()));
                String::new()
            }),
            value: f.value,
        })
        .collect();
    let Some((index, first)) = refused.first() else {
        return Ok(converted);
    };
    let error = NameNotUtf8 {
        index: *index,
        name: crate::display::escape_bytes(first),
    };
    let mut refused = refused.into_iter().peekable();
    let raw = converted
        .into_iter()
        .enumerate()
        .map(|(index, f)| RawField {
            name: match refused.next_if(|(at, _)| *at == index) {
                Some((_, bytes)) => bytes,
                None => f.name.into_bytes(),
            },
            value: f.value,
        })
        .collect();
    Err((raw, error))
}

fn bytes(v: Value) -> Result<Vec<u8>, ReplyError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(unexpected("a string", &other)),
    }
}

/// Parses `{ {id, fields, deliveries}... }` as returned by the claim scripts.
pub fn parse_claimed(v: Value) -> Result<Vec<Entry>, ReplyError> {
    let Value::Array(items) = v else {
        return Err(unexpected("claimed entries", &v));
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(mut triple) = item else {
                return Err(ReplyError("claimed entry is not an array".into()));
            };
            if triple.len() != 3 {
                return Err(ReplyError(
                    "claimed entry is not {id, fields, deliveries}".into(),
                ));
            }
            let deliveries = match triple.pop() {
                Some(Value::Int(n)) => u32::try_from(n.max(1)).unwrap_or(u32::MAX),
                other => {
                    return Err(ReplyError(format!(
                        "expected a delivery count, got {other:?}"
                    )));
                }
            };
            parse_entry(Value::Array(triple), deliveries)
        })
        .collect()
}

/// Parses a list of ids.
pub fn parse_ids(v: Value) -> Result<Vec<String>, ReplyError> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|i| bytes(i).map(|b| String::from_utf8_lossy(&b).into_owned()))
            .collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected("a list of ids", &other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_entries_and_trimmed_ones() {
        let entry = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![bulk("a"), Value::BulkString(vec![0, 255])]),
        ]);
        let entry = parse_entry(entry, 1).unwrap();
        let f = entry.fields.as_ref().unwrap();
        assert_eq!(
            (f[0].name.as_slice(), f[0].value.as_slice()),
            (&b"a"[..], &[0u8, 255][..])
        );
        let trimmed = parse_entry(Value::Array(vec![bulk("2-0"), Value::Nil]), 1).unwrap();
        assert_eq!(trimmed.fields, None);
        let claimed = Value::Array(vec![Value::Array(vec![
            bulk("3-0"),
            Value::Array(vec![bulk("a"), bulk("b")]),
            Value::Int(4),
        ])]);
        assert_eq!(parse_claimed(claimed).unwrap()[0].attempt, 4);
    }

    #[test]
    fn names_stay_bytes_and_non_utf8_ones_are_refused_whole() {
        let entry = Value::Array(vec![
            bulk("1-0"),
            Value::Array(vec![
                Value::BulkString(b"k\xff".to_vec()),
                bulk("1"),
                Value::BulkString(b"k\xfe".to_vec()),
                bulk("2"),
            ]),
        ]);
        let fields = parse_entry(entry, 1).unwrap().fields.unwrap();
        assert_eq!(fields[0].name, b"k\xff");
        assert_eq!(fields[1].name, b"k\xfe", "distinct names stay distinct");
        let (back, err) = to_wit_fields(fields.clone()).unwrap_err();
        assert_eq!(back, fields, "returned untouched for the DLQ");
        assert_eq!(err.index, 0);
        assert_eq!(err.name, "k\\xff");
        let mixed = vec![
            RawField {
                name: b"a".to_vec(),
                value: b"1".to_vec(),
            },
            RawField {
                name: b"k\xff".to_vec(),
                value: b"2".to_vec(),
            },
            RawField {
                name: b"b".to_vec(),
                value: b"3".to_vec(),
            },
        ];
        let (back, err) = to_wit_fields(mixed.clone()).unwrap_err();
        assert_eq!(back, mixed, "good and bad names back in place");
        assert_eq!(err.index, 1);
        let ok = vec![RawField {
            name: "näme".as_bytes().to_vec(),
            value: vec![255],
        }];
        let wit = to_wit_fields(ok).unwrap();
        assert_eq!(
            (wit[0].name.as_str(), wit[0].value.as_slice()),
            ("näme", &[255u8][..])
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        assert!(parse_claimed(Value::Int(3)).is_err());
        let odd = Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("a")])]);
        assert!(parse_entry(odd, 1).is_err());
    }
}
