//! One message as a handler sees it: where it came from, and typed access
//! to its fields.

use std::str::FromStr;

use serde::de::DeserializeOwned;

use crate::FieldError;
use crate::bindings::streamhost::plugin::types::{
    Field, Message as WitMessage, PubsubMessage, SortedSetMember, Source as WitSource, StreamEntry,
};

/// Where a message came from (see [`Message::source`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source<'a> {
    /// An entry of a stream consumer group.
    Stream {
        /// The stream it was written to.
        name: &'a str,
        /// Its id there (for a replayed dead letter, the id it had there).
        id: &'a str,
    },
    /// A Pub/Sub message.
    Pubsub {
        /// The channel it was published on, byte for byte.
        channel: &'a [u8],
        /// The subscribed pattern that matched it, if any.
        pattern: Option<&'a str>,
    },
    /// An item of a list queue.
    List {
        /// The list key.
        key: &'a str,
    },
    /// A member of a sorted-set queue.
    SortedSet {
        /// The sorted set.
        key: &'a str,
        /// Its score (for `order = "due"`, the due time in Unix ms).
        score: f64,
    },
}

/// One message handed to a handler: a stream entry, or the payload of a
/// Pub/Sub message, list item or sorted-set member as one field `data`.
///
/// Field values are bytes, as in Redis; the `field_*` helpers read them as
/// text, JSON or numbers. If a name occurs more than once (Redis allows it),
/// lookups return the first occurrence.
#[derive(Debug, Clone)]
pub struct Message {
    inner: WitMessage,
}

impl Message {
    /// A stream entry built by hand, for testing handlers natively.
    pub fn new(stream: impl Into<String>, id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            inner: WitMessage {
                source: WitSource::Stream(StreamEntry {
                    name: stream.into(),
                    id: id.clone(),
                }),
                id,
                fields: Vec::new(),
                attempt: 1,
            },
        }
    }

    /// Sets where the message came from (builder style, for tests).
    pub fn with_source(mut self, source: Source<'_>) -> Self {
        self.inner.source = match source {
            Source::Stream { name, id } => WitSource::Stream(StreamEntry {
                name: name.into(),
                id: id.into(),
            }),
            Source::Pubsub { channel, pattern } => WitSource::Pubsub(PubsubMessage {
                channel: channel.into(),
                pattern: pattern.map(Into::into),
            }),
            Source::List { key } => WitSource::List(key.into()),
            Source::SortedSet { key, score } => WitSource::SortedSet(SortedSetMember {
                key: key.into(),
                score,
            }),
        };
        self
    }

    /// Appends a field (builder style, for tests).
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.inner.fields.push(Field {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Sets the delivery attempt (builder style, for tests).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.inner.attempt = attempt;
        self
    }

    /// Where the message came from.
    pub fn source(&self) -> Source<'_> {
        match &self.inner.source {
            WitSource::Stream(s) => Source::Stream {
                name: &s.name,
                id: &s.id,
            },
            WitSource::Pubsub(p) => Source::Pubsub {
                channel: &p.channel,
                pattern: p.pattern.as_deref(),
            },
            WitSource::List(key) => Source::List { key },
            WitSource::SortedSet(s) => Source::SortedSet {
                key: &s.key,
                score: s.score,
            },
        }
    }

    /// The stream the entry was read from; on other sources, as a 0.1
    /// handler saw it, the list or sorted-set key, or the Pub/Sub channel
    /// (empty if the channel is not UTF-8: [`Message::channel`] has its bytes).
    pub fn stream(&self) -> &str {
        match self.source() {
            Source::Stream { name, .. } => name,
            Source::List { key } | Source::SortedSet { key, .. } => key,
            Source::Pubsub { channel, .. } => std::str::from_utf8(channel).unwrap_or(""),
        }
    }

    /// The Pub/Sub channel the message was published on (`None` on other sources).
    pub fn channel(&self) -> Option<&[u8]> {
        match self.source() {
            Source::Pubsub { channel, .. } => Some(channel),
            _ => None,
        }
    }

    /// The sorted-set member's score (`None` on other sources).
    pub fn score(&self) -> Option<f64> {
        match self.source() {
            Source::SortedSet { score, .. } => Some(score),
            _ => None,
        }
    }

    /// This delivery's id: the stream entry id (for a replayed dead letter,
    /// its id in the redelivery stream), or the host's token on other sources.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// 1-based delivery attempt, counted by Redis.
    pub fn attempt(&self) -> u32 {
        self.inner.attempt
    }

    /// All fields as `(name, value)`, in the order they were written.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> {
        self.inner
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_slice()))
    }

    /// The raw value of field `name`.
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find_map(|(n, value)| (n == name).then_some(value))
    }

    /// Field `name` as UTF-8 text.
    pub fn field_str(&self, name: &str) -> Result<&str, FieldError> {
        std::str::from_utf8(self.required(name)?).map_err(|_| FieldError::NotUtf8 {
            field: name.to_owned(),
        })
    }

    /// Field `name` parsed as JSON into `T`.
    pub fn field_json<T: DeserializeOwned>(&self, name: &str) -> Result<T, FieldError> {
        serde_json::from_slice(self.required(name)?).map_err(|source| FieldError::NotJson {
            field: name.to_owned(),
            source,
        })
    }

    /// Field `name` parsed with [`FromStr`], meant for integers (`u32`, `i64`, ...).
    pub fn field_parse<T>(&self, name: &str) -> Result<T, FieldError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.field_str(name)?
            .parse()
            .map_err(|e: T::Err| FieldError::NotNumber {
                field: name.to_owned(),
                reason: e.to_string(),
            })
    }

    fn required(&self, name: &str) -> Result<&[u8], FieldError> {
        self.field(name).ok_or_else(|| FieldError::Missing {
            field: name.to_owned(),
        })
    }
}

impl From<WitMessage> for Message {
    fn from(inner: WitMessage) -> Self {
        Self { inner }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HandlerError;

    fn order() -> Message {
        Message::new("orders", "1700000000000-0")
            .with_attempt(3)
            .with_field("data", r#"{"order_id": 7}"#)
            .with_field("count", "42")
            .with_field("blob", vec![0xff, 0xfe])
            .with_field("count", "first one wins")
    }

    #[test]
    fn exposes_entry_metadata() {
        let msg = order();
        assert_eq!(msg.stream(), "orders");
        assert_eq!(msg.id(), "1700000000000-0");
        assert_eq!(msg.attempt(), 3);
    }

    #[test]
    fn exposes_the_source() {
        let msg = order();
        assert_eq!(
            msg.source(),
            Source::Stream {
                name: "orders",
                id: "1700000000000-0"
            }
        );
        assert_eq!((msg.channel(), msg.score()), (None, None));
        let msg = msg.with_source(Source::Pubsub {
            channel: b"ch\xff",
            pattern: Some("ch*"),
        });
        assert_eq!(msg.channel(), Some(&b"ch\xff"[..]));
        assert_eq!(msg.stream(), "");
        let msg = msg.with_source(Source::SortedSet {
            key: "jobs",
            score: 1.5,
        });
        assert_eq!((msg.stream(), msg.score()), ("jobs", Some(1.5)));
        let msg = msg.with_source(Source::List { key: "q" });
        assert_eq!(msg.stream(), "q");
    }

    #[test]
    fn fields_keep_written_order() {
        let msg = order();
        let names: Vec<&str> = msg.fields().map(|(name, _)| name).collect();
        assert_eq!(names, ["data", "count", "blob", "count"]);
    }

    #[test]
    fn field_returns_first_occurrence() {
        let msg = order();
        assert_eq!(msg.field("count"), Some(&b"42"[..]));
        assert_eq!(msg.field("nope"), None);
    }

    #[test]
    fn field_str_reads_text_and_rejects_binary() {
        let msg = order();
        assert_eq!(msg.field_str("count").unwrap(), "42");
        let err = msg.field_str("blob").unwrap_err();
        assert!(matches!(err, FieldError::NotUtf8 { .. }));
        assert_eq!(err.to_string(), "field `blob` is not UTF-8");
    }

    #[test]
    fn missing_field_names_the_field() {
        let err = order().field_str("nope").unwrap_err();
        assert_eq!(err.field(), "nope");
        assert_eq!(err.to_string(), "missing field `nope`");
    }

    #[test]
    fn field_json_deserializes() {
        #[derive(serde::Deserialize)]
        struct Data {
            order_id: u64,
        }
        let data: Data = order().field_json("data").unwrap();
        assert_eq!(data.order_id, 7);
    }

    #[test]
    fn field_json_reports_serde_error() {
        let err = order().field_json::<serde_json::Value>("blob").unwrap_err();
        assert!(matches!(err, FieldError::NotJson { .. }));
        assert!(
            err.to_string().starts_with("field `blob` is not JSON: "),
            "{err}"
        );
    }

    #[test]
    fn field_parse_reads_integers() {
        let msg = order();
        assert_eq!(msg.field_parse::<u32>("count").unwrap(), 42);
        let err = msg.field_parse::<u8>("data").unwrap_err();
        assert!(matches!(err, FieldError::NotNumber { .. }));
        assert_eq!(
            err.to_string(),
            "field `data` is not a number: invalid digit found in string"
        );
    }

    #[test]
    fn field_error_becomes_reject() {
        let err: HandlerError = order().field_str("nope").unwrap_err().into();
        assert_eq!(err, HandlerError::Reject("missing field `nope`".into()));
    }
}
