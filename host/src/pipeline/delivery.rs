//! A delivery of an entry by a source, and what is left of it once its
//! fields went to the handler, with the accounting that tells handler
//! attempts from deliveries.

use std::sync::Arc;

use crate::config::SourceKind;
use crate::plugin::{PubsubMessage, SortedSetMember, Source, StreamEntry};
use crate::streams::Entry;
use crate::streams::entry::RawField;

/// Deliveries of an entry that were not handler attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uncounted {
    /// Deliveries no handler saw (a read reply lost, or a timed-out read
    /// that Redis ran later).
    pub unseen: u32,
    /// Deliveries whose settling Redis refused or could not take (a commit
    /// refused while out of memory, a failed state read).
    pub refused: u32,
}

impl Uncounted {
    fn total(self) -> u32 {
        self.unseen.saturating_add(self.refused)
    }
}

/// One delivery of an entry by a source.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The Redis key the entry was read from (a stream, a redelivery stream,
    /// a list...): every action on the delivery targets this key.
    pub key: Arc<str>,
    /// The entry; `entry.attempt` is how often the source (Redis) has
    /// delivered it, this delivery included.
    pub entry: Entry,
    /// Earlier deliveries that were not handler attempts.
    pub uncounted: Uncounted,
    /// What the source knows of the entry beyond its key (the handler sees it).
    pub origin: Origin,
}

/// What a source knows of an entry beyond the key it was read from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Origin {
    /// The key says it all (a stream entry, a list item).
    #[default]
    Key,
    /// A Pub/Sub message: its channel and the pattern that matched, byte for byte.
    Channel {
        /// The channel it was published on.
        channel: Vec<u8>,
        /// The subscribed pattern that matched, for a `PSUBSCRIBE`.
        pattern: Option<Vec<u8>>,
    },
    /// A sorted-set member: its score in the queue, as Redis wrote it.
    Score(String),
}

impl Origin {
    /// The dead-letter metadata that keeps it (`dlq.channel`, `dlq.pattern`,
    /// `dlq.score`), so a replay hands the handler the same origin.
    pub(crate) fn dlq_fields(&self) -> Vec<(&'static str, &[u8])> {
        use crate::dlq::meta;
        match self {
            Origin::Key => Vec::new(),
            Origin::Channel { channel, pattern } => {
                let mut out = vec![(meta::CHANNEL, channel.as_slice())];
                if let Some(pattern) = pattern {
                    out.push((meta::PATTERN, pattern.as_slice()));
                }
                out
            }
            Origin::Score(score) => vec![(meta::SCORE, score.as_bytes())],
        }
    }
}

impl Delivery {
    /// A delivery of `entry` from `key` with every earlier delivery counted.
    pub fn new(key: Arc<str>, entry: Entry) -> Delivery {
        Delivery {
            key,
            entry,
            uncounted: Uncounted::default(),
            origin: Origin::Key,
        }
    }

    /// The handler attempt this delivery is (1-based): Redis's delivery count
    /// minus the deliveries that were not attempts.
    pub fn attempt(&self) -> u32 {
        attempt(self.entry.attempt, self.uncounted)
    }

    /// Deliveries that could have reached a handler: all but those Redis
    /// refused to settle (which this host saw happen). Bounded by
    /// [`settle::before_handling`](super::settle::before_handling).
    pub fn reachable_deliveries(&self) -> u32 {
        self.entry.attempt.saturating_sub(self.uncounted.refused)
    }

    /// Bytes of the entry's names and values (what it costs to hold it).
    pub fn bytes(&self) -> usize {
        self.entry.fields.as_ref().map_or(0, |fields| {
            fields
                .iter()
                .map(|f| f.name.len() + f.value.len() + 16)
                .sum()
        }) + self.entry.id.len()
            + 64
    }

    /// What is left of a delivery once its fields went to the handler.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            key: self.key.clone(),
            id: self.entry.id.clone(),
            deliveries: self.entry.attempt,
            uncounted: self.uncounted,
        }
    }
}

/// A delivery without its fields: enough to ack, retry or let it go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The key it was read from.
    pub key: Arc<str>,
    /// The entry id.
    pub id: String,
    /// Redis's delivery count at this delivery.
    pub deliveries: u32,
    /// Earlier deliveries that were not handler attempts.
    pub uncounted: Uncounted,
}

impl Receipt {
    /// The handler attempt the delivery was (see [`Delivery::attempt`]).
    pub fn attempt(&self) -> u32 {
        attempt(self.deliveries, self.uncounted)
    }
}

fn attempt(deliveries: u32, uncounted: Uncounted) -> u32 {
    deliveries.saturating_sub(uncounted.total()).max(1)
}

/// An entry as first written: for a replayed dead letter read from the
/// plugin's redelivery stream, the key it came from, its origin and its own
/// fields; for anything else, what was read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Original {
    /// The key it was first read from (a stream, a list, a sorted set; for
    /// Pub/Sub the channel, shown as text: [`Origin::Channel`] has its bytes).
    pub stream: String,
    /// Its id there, when it differs from the id read (a replayed entry).
    pub id: Option<String>,
    /// Its fields, byte for byte.
    pub fields: Vec<RawField>,
    /// Its channel or score, where the source has one.
    pub origin: Origin,
}

/// Unwraps `fields` read from `key` (with the delivery's origin) to the
/// entry as first written, given the plugin's redelivery stream and source key.
pub(crate) fn original(
    streams: (&str, &str),
    key: &str,
    fields: Vec<RawField>,
    origin: Origin,
) -> Original {
    let o = original_ref(streams, key, fields, origin);
    Original {
        stream: o.stream.into_owned(),
        id: o.id,
        fields: o.fields,
        origin: o.origin,
    }
}

/// [`Original`] with the key borrowed where it is the key read (every entry
/// but a replayed one): the worker copies it into its reused message instead
/// of allocating a name per entry.
pub(crate) struct OriginalRef<'a> {
    /// The key it was first read from (see [`Original::stream`]).
    pub stream: std::borrow::Cow<'a, str>,
    /// Its id there, when it differs from the id read (a replayed entry).
    pub id: Option<String>,
    /// Its fields, byte for byte.
    pub fields: Vec<RawField>,
    /// Its channel or score, where the source has one.
    pub origin: Origin,
}

/// [`original`], borrowing the key from `key` where it can.
pub(crate) fn original_ref<'a>(
    (redeliver_stream, stream): (&str, &str),
    key: &'a str,
    fields: Vec<RawField>,
    origin: Origin,
) -> OriginalRef<'a> {
    if key != redeliver_stream {
        return OriginalRef {
            stream: key.into(),
            id: None,
            fields,
            origin,
        };
    }
    let r = crate::dlq::redeliver::decode(fields);
    OriginalRef {
        stream: r
            .source_stream
            .map_or_else(|| stream.to_owned().into(), Into::into),
        id: r.source_id,
        fields: r.fields,
        origin: match (r.channel, r.score) {
            (Some(channel), _) => Origin::Channel {
                channel,
                pattern: r.pattern,
            },
            (None, Some(score)) => Origin::Score(score),
            (None, None) => Origin::Key,
        },
    }
}

/// Where a message came from, as the handler sees it: the plugin's kind of
/// source, with the key, id, channel or score of this entry.
pub(crate) fn message_source(
    kind: SourceKind<'_>,
    key: &str,
    original_id: Option<&str>,
    id: &str,
    origin: &Origin,
) -> Source {
    match (kind, origin) {
        (SourceKind::Subscribe(_), Origin::Channel { channel, pattern }) => {
            Source::Pubsub(PubsubMessage {
                channel: channel.clone(),
                // One of the plugin's `subscribe` names, so UTF-8.
                pattern: pattern
                    .as_ref()
                    .map(|p| String::from_utf8_lossy(p).into_owned()),
            })
        }
        (SourceKind::Subscribe(_), _) => Source::Pubsub(PubsubMessage {
            channel: key.as_bytes().to_vec(),
            pattern: None,
        }),
        (SourceKind::List(_), _) => Source::List(key.to_owned()),
        (SourceKind::SortedSet(..), origin) => Source::SortedSet(SortedSetMember {
            key: key.to_owned(),
            score: match origin {
                Origin::Score(score) => parse_score(score),
                _ => f64::NAN,
            },
        }),
        (SourceKind::Stream(_), _) => Source::Stream(StreamEntry {
            name: key.to_owned(),
            id: original_id.unwrap_or(id).to_owned(),
        }),
    }
}

/// A score as Redis writes it (`inf`, `-inf`, `1.5`, `1e+20`...).
fn parse_score(score: &str) -> f64 {
    match score {
        "inf" | "+inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or(f64::NAN),
    }
}

/// A batch of deliveries on its way to the workers.
pub(crate) type Batch = Vec<Delivery>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_leave_out_what_no_handler_saw_or_redis_refused() {
        let mut d = Delivery::new(
            "s".into(),
            Entry {
                id: "1-0".into(),
                fields: Some(Vec::new()),
                attempt: 5,
            },
        );
        assert_eq!(d.attempt(), 5);
        d.uncounted = Uncounted {
            unseen: 1,
            refused: 2,
        };
        assert_eq!(d.attempt(), 2);
        assert_eq!(d.reachable_deliveries(), 3);
        assert_eq!(d.receipt().attempt(), 2);
    }
}
