//! Dead letters: what a dead-letter entry looks like, whose it is, and where
//! it lives. Writing one lives in [`write`], the operator's list/replay/purge
//! in [`ops`], the redelivery stream a replay goes to in [`redeliver`].
//!
//! A dead-letter entry holds the original fields byte for byte (names too),
//! each name prefixed with `msg.`, plus metadata under `dlq.` names. Because
//! every original name gets the prefix, no user field can collide with
//! metadata. Each plugin has its own DLQ by default (`dlq:<stream>:<plugin>`);
//! a DLQ shared on purpose is filtered by `dlq.plugin` (or, for entries
//! without one, `dlq.group`).

pub mod ops;
pub mod redeliver;
mod scan;
pub mod select;
pub mod write;

use std::time::Duration;

use redis::Value;

use crate::streams::entry::{self, RawField, ReplyError};

pub use ops::{
    Counts, Filter, Page, ReplayOptions, ReplayOutcome, ReplayReport, Selection, Summary, count,
    list, owned_count, purge, range, replay, replay_one, show,
};
pub use select::Selected;
pub use write::{Letter, Written, dead_letter};

/// Prefix of original field names in a dead-letter (and redelivery) entry.
pub const FIELD_PREFIX: &str = "msg.";
/// Metadata field names.
pub mod meta {
    /// Unique per write: tells the finishing script which entry is the one
    /// just added (see [`super::write`]).
    pub const NONCE: &str = "dlq.nonce";
    /// The stream the entry was first read from (for a replayed entry: the
    /// original stream, not the redelivery stream).
    pub const SOURCE_STREAM: &str = "dlq.source-stream";
    /// Its id there (for a replayed entry: the original id).
    pub const SOURCE_ID: &str = "dlq.source-id";
    /// The consumer group.
    pub const GROUP: &str = "dlq.group";
    /// The consumer that dead-lettered it.
    pub const CONSUMER: &str = "dlq.consumer";
    /// The plugin name.
    pub const PLUGIN: &str = "dlq.plugin";
    /// `sha256:<hex>` of the component that handled the last attempt.
    pub const DIGEST: &str = "dlq.component-digest";
    /// `rejected`, `attempts-exhausted`, `trap:<kind>` or `undeliverable:<why>`.
    pub const REASON: &str = "dlq.reason";
    /// The last error text.
    pub const ERROR: &str = "dlq.error";
    /// Deliveries made, the last included (a replay starts again at 1).
    pub const ATTEMPTS: &str = "dlq.attempts";
    /// Milliseconds since the Unix epoch when it was dead-lettered.
    pub const TIME_MS: &str = "dlq.time-ms";
    /// Set when the entry failed again after a replay: its id in the
    /// redelivery stream (the original id stays in [`SOURCE_ID`]).
    pub const REDELIVERY_ID: &str = "dlq.redelivery-id";
    /// On a redelivery entry: the DLQ it was replayed from.
    pub const REPLAYED_FROM: &str = "dlq.replayed-from";
    /// On a redelivery entry: its id in that DLQ.
    pub const REPLAYED_ID: &str = "dlq.replayed-id";
    /// A Pub/Sub message's channel, byte for byte.
    pub const CHANNEL: &str = "dlq.channel";
    /// The subscribed pattern that matched a Pub/Sub message.
    pub const PATTERN: &str = "dlq.pattern";
    /// A sorted-set member's score in its queue.
    pub const SCORE: &str = "dlq.score";
}

/// The default dead-letter stream of a plugin. The stream name is embedded
/// whole and the prefix has no braces, so the key keeps the stream's Redis
/// Cluster hash tag.
pub fn dlq_key(stream: &str, plugin: &str) -> String {
    format!("dlq:{stream}:{plugin}")
}

/// The stream replayed dead letters go to, which only the plugin's group
/// reads; same hash tag as the stream.
pub fn redeliver_key(stream: &str, plugin: &str) -> String {
    format!("redeliver:{stream}:{plugin}")
}

/// Whose dead letters: the plugin, and its group for entries written without
/// a `dlq.plugin` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The plugin name (`dlq.plugin`).
    pub plugin: String,
    /// Its consumer group (`dlq.group`).
    pub group: String,
}

impl Owner {
    /// Whether `d` belongs to this owner.
    pub fn owns(&self, d: &DeadLetter) -> bool {
        match d.meta(meta::PLUGIN) {
            Some(p) => p == self.plugin,
            None => d.meta(meta::GROUP) == Some(self.group.as_str()),
        }
    }
}

/// Operations on dead letters.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// Redis refused or the connection failed (before anything was sent, or
    /// for a command whose failure changes nothing).
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A reply of the wrong shape.
    #[error(transparent)]
    Reply(#[from] ReplyError),
    /// The dead letter lacks what a replay needs.
    #[error("dead letter {id} cannot be replayed: {why}")]
    NotReplayable {
        /// Its id in the DLQ.
        id: String,
        /// What is missing.
        why: &'static str,
    },
    /// The dead-letter entry was not written (the finishing script did not
    /// find it); nothing was acked, the entry stays pending.
    #[error("the dead-letter entry was not written; the entry stays pending")]
    NotWritten,
    /// No reply in time to a read.
    #[error("no reply from Redis within {0:?}")]
    ReadTimeout(Duration),
}

/// One entry of a dead-letter stream, split into metadata and original fields.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// Every field that is not an original one (`dlq.*` names), as stored.
    pub metadata: Vec<(Vec<u8>, Vec<u8>)>,
    /// The original fields, names without `msg.`, names and values byte for byte.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl DeadLetter {
    /// A metadata value by its full name (see [`meta`]), when it is UTF-8
    /// (the host writes only UTF-8 metadata).
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// When it was dead-lettered (Unix ms): `dlq.time-ms`, else the id's time.
    pub fn time_ms(&self) -> Option<u64> {
        self.meta(meta::TIME_MS)
            .and_then(|t| t.parse().ok())
            .or_else(|| id_ms(&self.id))
    }

    /// Splits a stream entry (DLQ or redelivery) into metadata and fields.
    pub fn from_fields(id: String, raw: Vec<RawField>) -> DeadLetter {
        let mut metadata = Vec::new();
        let mut fields = Vec::new();
        for f in raw {
            match f.name.strip_prefix(FIELD_PREFIX.as_bytes()) {
                Some(name) => fields.push((name.to_vec(), f.value)),
                None => metadata.push((f.name, f.value)),
            }
        }
        DeadLetter {
            id,
            metadata,
            fields,
        }
    }

    fn from_entry(e: entry::Entry) -> DeadLetter {
        DeadLetter::from_fields(e.id, e.fields.unwrap_or_default())
    }
}

/// The millisecond part of a stream id.
pub fn id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// Parses an `XRANGE`/`XREVRANGE` reply into dead letters.
fn parse_letters(reply: Value) -> Result<Vec<DeadLetter>, ReplyError> {
    let Value::Array(items) = reply else {
        return Ok(Vec::new());
    };
    items
        .into_iter()
        .map(|v| entry::parse_entry(v, 0).map(DeadLetter::from_entry))
        .collect()
}

/// Field-name/value bytes of anything the host dead-letters: a handler's
/// message fields or raw entry fields.
pub trait FieldBytes {
    /// The name, byte for byte.
    fn name_bytes(&self) -> &[u8];
    /// The value, byte for byte.
    fn value_bytes(&self) -> &[u8];
}

impl FieldBytes for crate::plugin::Field {
    fn name_bytes(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn value_bytes(&self) -> &[u8] {
        &self.value
    }
}

impl FieldBytes for RawField {
    fn name_bytes(&self) -> &[u8] {
        &self.name
    }
    fn value_bytes(&self) -> &[u8] {
        &self.value
    }
}

impl FieldBytes for (Vec<u8>, Vec<u8>) {
    fn name_bytes(&self) -> &[u8] {
        &self.0
    }
    fn value_bytes(&self) -> &[u8] {
        &self.1
    }
}

/// Bytes `fields` take on the wire, to size timeouts.
pub fn fields_len<F: FieldBytes>(fields: &[F]) -> usize {
    fields
        .iter()
        .map(|f| f.name_bytes().len() + f.value_bytes().len() + FIELD_PREFIX.len() + 16)
        .sum()
}

/// How long a write of `bytes` may take before its outcome counts as unknown:
/// 10 s plus 1 s per 4 MiB (well below what a loopback or LAN link does, well
/// above what a busy Redis needs).
pub fn write_budget(bytes: usize) -> Duration {
    Duration::from_secs(10) + Duration::from_millis((bytes as u64) / (4 * 1024))
}

/// A fresh random nonce for one write.
fn nonce() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_matches_plugin_or_for_old_entries_the_group() {
        let letter = |meta: &[(&str, &str)]| DeadLetter {
            id: "1-0".into(),
            metadata: meta
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            fields: vec![],
        };
        let owner = Owner {
            plugin: "a".into(),
            group: "g".into(),
        };
        assert!(owner.owns(&letter(&[(meta::PLUGIN, "a"), (meta::GROUP, "x")])));
        assert!(!owner.owns(&letter(&[(meta::PLUGIN, "b"), (meta::GROUP, "g")])));
        assert!(owner.owns(&letter(&[(meta::GROUP, "g")])));
        assert!(!owner.owns(&letter(&[])));
    }

    #[test]
    fn budget_grows_with_size() {
        assert_eq!(write_budget(0), Duration::from_secs(10));
        assert!(write_budget(100 << 20) >= Duration::from_secs(30));
    }
}
