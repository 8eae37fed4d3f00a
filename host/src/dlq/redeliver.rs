//! The redelivery stream (`redeliver:<stream>:<plugin>`): where a replay puts
//! a dead letter so that only the failing plugin's group sees it again. Its
//! entries have the DLQ layout: the original fields under `msg.` names, the
//! original stream and id under `dlq.` names (and a Pub/Sub message's channel
//! and pattern, a sorted-set member's score). This module turns one back
//! into what the handler sees.

use super::{FIELD_PREFIX, meta};
use crate::streams::entry::RawField;

/// A replayed entry as read from a redelivery stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redelivered {
    /// The stream the entry was first written to, when recorded.
    pub source_stream: Option<String>,
    /// Its id there, when recorded.
    pub source_id: Option<String>,
    /// The original fields, names and values byte for byte.
    pub fields: Vec<RawField>,
    /// A Pub/Sub message's channel, byte for byte.
    pub channel: Option<Vec<u8>>,
    /// The pattern that matched a Pub/Sub message.
    pub pattern: Option<Vec<u8>>,
    /// A sorted-set member's score, as Redis wrote it.
    pub score: Option<String>,
}

/// Splits a redelivery entry into its origin and original fields. Fields of
/// neither kind (written to the stream by something else) are dropped: they
/// were never part of the original entry.
pub fn decode(raw: Vec<RawField>) -> Redelivered {
    let mut out = Redelivered {
        source_stream: None,
        source_id: None,
        fields: Vec::with_capacity(raw.len()),
        channel: None,
        pattern: None,
        score: None,
    };
    for f in raw {
        if let Some(name) = f.name.strip_prefix(FIELD_PREFIX.as_bytes()) {
            out.fields.push(RawField {
                name: name.to_vec(),
                value: f.value,
            });
        } else if f.name == meta::SOURCE_STREAM.as_bytes() {
            out.source_stream = String::from_utf8(f.value).ok();
        } else if f.name == meta::SOURCE_ID.as_bytes() {
            out.source_id = String::from_utf8(f.value).ok();
        } else if f.name == meta::CHANNEL.as_bytes() {
            out.channel = Some(f.value);
        } else if f.name == meta::PATTERN.as_bytes() {
            out.pattern = Some(f.value);
        } else if f.name == meta::SCORE.as_bytes() {
            out.score = String::from_utf8(f.value).ok();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: &[u8], v: &[u8]) -> RawField {
        RawField {
            name: n.to_vec(),
            value: v.to_vec(),
        }
    }

    #[test]
    fn decodes_origin_and_original_fields_byte_for_byte() {
        let r = decode(vec![
            field(b"dlq.nonce", b"x"),
            field(b"dlq.source-stream", b"orders"),
            field(b"dlq.source-id", b"5-1"),
            field(b"msg.k\xff", b"\x00"),
            field(b"msg.msg.x", b"v"),
            field(b"msg.", b""),
        ]);
        assert_eq!(r.source_stream.as_deref(), Some("orders"));
        assert_eq!(r.source_id.as_deref(), Some("5-1"));
        assert_eq!(
            r.fields,
            vec![
                field(b"k\xff", b"\x00"),
                field(b"msg.x", b"v"),
                field(b"", b"")
            ]
        );
    }
}
