//! Stream entries as read from Redis, parsed straight from replies without
//! intermediate maps (field order and binary values are kept).

use redis::Value;

use crate::plugin::Field;

/// One entry to hand to a handler.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The entry id.
    pub id: String,
    /// The fields, or `None` when the entry was deleted or trimmed while pending.
    pub fields: Option<Vec<Field>>,
    /// 1-based delivery attempt, as Redis counts deliveries.
    pub attempt: u32,
}

/// A reply that does not have the shape the command documents.
#[derive(Debug, thiserror::Error)]
#[error("unexpected reply from Redis: {0}")]
pub struct ReplyError(pub String);

fn unexpected(what: &str, v: &Value) -> ReplyError {
    ReplyError(format!("expected {what}, got {v:?}"))
}

/// Parses the reply of `XREADGROUP ... STREAMS <one stream> <id>`; every entry
/// gets `attempt` (callers fix it up where Redis knows better). A nil reply
/// (the block timed out) is no entries.
pub fn parse_read_reply(reply: Value, attempt: u32) -> Result<Vec<Entry>, ReplyError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams
            .into_iter()
            .map(stream_entries)
            .collect::<Result<Vec<_>, _>>()?,
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(_, entries)| Ok(entries))
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(unexpected("an array of streams", &other)),
    };
    let mut out = Vec::new();
    for entries in streams {
        match entries {
            Value::Array(items) => {
                out.reserve(items.len());
                for item in items {
                    out.push(parse_entry(item, attempt)?);
                }
            }
            Value::Nil => {}
            other => return Err(unexpected("an array of entries", &other)),
        }
    }
    Ok(out)
}

/// `[name, entries]` → entries.
fn stream_entries(v: Value) -> Result<Value, ReplyError> {
    match v {
        Value::Array(mut pair) if pair.len() == 2 => Ok(pair.swap_remove(1)),
        other => Err(unexpected("[stream, entries]", &other)),
    }
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
                    Ok(Field {
                        name: field_name(n)?,
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

fn parse_fields(flat: Vec<Value>) -> Result<Vec<Field>, ReplyError> {
    if !flat.len().is_multiple_of(2) {
        return Err(ReplyError("odd number of field names and values".into()));
    }
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(n), Some(v)) = (it.next(), it.next()) {
        fields.push(Field {
            name: field_name(n)?,
            value: bytes(v)?,
        });
    }
    Ok(fields)
}

/// Field names travel as WIT strings; names that are not UTF-8 are converted
/// lossily (values stay bytes).
fn field_name(v: Value) -> Result<String, ReplyError> {
    let b = bytes(v)?;
    Ok(String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
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
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("a"), Value::BulkString(vec![0, 255])]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let entries = parse_read_reply(reply, 1).unwrap();
        assert_eq!(entries.len(), 2);
        let f = entries[0].fields.as_ref().unwrap();
        assert_eq!(
            (f[0].name.as_str(), f[0].value.as_slice()),
            ("a", &[0u8, 255][..])
        );
        assert_eq!(entries[1].fields, None);
        assert!(parse_read_reply(Value::Nil, 1).unwrap().is_empty());
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        assert!(parse_read_reply(Value::Int(3), 1).is_err());
        let odd = Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("a")])]);
        assert!(parse_entry(odd, 1).is_err());
    }
}
