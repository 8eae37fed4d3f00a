//! Dead-letter streams: moving an entry there atomically with its ack, and the
//! operations behind `streamhost dlq` (list, show, replay, purge).
//!
//! A dead-letter entry holds the original fields byte for byte, each name
//! prefixed with `msg.`, plus metadata under `dlq.` names. Because every
//! original name gets the prefix, no user field can collide with metadata.

use std::time::{SystemTime, UNIX_EPOCH};

use redis::Value;
use redis::aio::ConnectionLike;

use crate::outcome::DeadReason;
use crate::plugin::Message;
use crate::streams::{entry, scripts};

/// Prefix of original field names in a dead-letter entry.
pub const FIELD_PREFIX: &str = "msg.";
/// Metadata field names.
pub mod meta {
    /// The stream the entry came from.
    pub const SOURCE_STREAM: &str = "dlq.source-stream";
    /// Its id there.
    pub const SOURCE_ID: &str = "dlq.source-id";
    /// The consumer group.
    pub const GROUP: &str = "dlq.group";
    /// The consumer that dead-lettered it.
    pub const CONSUMER: &str = "dlq.consumer";
    /// The plugin name.
    pub const PLUGIN: &str = "dlq.plugin";
    /// `sha256:<hex>` of the component that handled the last attempt.
    pub const DIGEST: &str = "dlq.component-digest";
    /// `rejected`, `attempts-exhausted` or `trap:<kind>`.
    pub const REASON: &str = "dlq.reason";
    /// The last error text.
    pub const ERROR: &str = "dlq.error";
    /// Deliveries made, the last included.
    pub const ATTEMPTS: &str = "dlq.attempts";
    /// Milliseconds since the Unix epoch when it was dead-lettered.
    pub const TIME_MS: &str = "dlq.time-ms";
}

/// Where and what to dead-letter: one delivery of an entry.
#[derive(Debug, Clone, Copy)]
pub struct Letter<'a> {
    /// The key the entry was read from (its ack happens there).
    pub source_stream: &'a str,
    /// The dead-letter stream.
    pub dlq_stream: &'a str,
    /// The consumer group.
    pub group: &'a str,
    /// This consumer (the script checks it still owns the entry).
    pub consumer: &'a str,
    /// The plugin name.
    pub plugin: &'a str,
    /// `sha256:<hex>` of the component version that made the last attempt.
    pub digest: &'a str,
    /// Why.
    pub reason: &'a DeadReason,
    /// The last error.
    pub error: &'a str,
    /// Attempts made.
    pub attempts: u32,
    /// The entry as delivered.
    pub message: &'a Message,
}

/// Moves a pending entry to the DLQ and acks it, in one script, if this
/// consumer still owns it: `Some(dlq id)`, or `None` when another consumer
/// owns it now. One try: the caller retries (the entry stays pending).
pub async fn dead_letter<C: ConnectionLike + Send>(
    conn: &mut C,
    letter: &Letter<'_>,
) -> Result<Option<String>, redis::RedisError> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let msg = letter.message;
    let mut invocation = scripts::DEAD_LETTER.prepare_invoke();
    invocation
        .key(letter.source_stream)
        .key(letter.dlq_stream)
        .arg(letter.group)
        .arg(letter.consumer)
        .arg(&msg.id);
    let metadata = [
        (meta::SOURCE_STREAM, letter.source_stream.to_owned()),
        (meta::SOURCE_ID, msg.id.clone()),
        (meta::GROUP, letter.group.to_owned()),
        (meta::CONSUMER, letter.consumer.to_owned()),
        (meta::PLUGIN, letter.plugin.to_owned()),
        (meta::DIGEST, letter.digest.to_owned()),
        (meta::REASON, letter.reason.label()),
        (meta::ERROR, letter.error.to_owned()),
        (meta::ATTEMPTS, letter.attempts.to_string()),
        (meta::TIME_MS, now_ms.to_string()),
    ];
    for (name, value) in &metadata {
        invocation.arg(*name).arg(value);
    }
    for field in &msg.fields {
        invocation
            .arg(format!("{FIELD_PREFIX}{}", field.name))
            .arg(&field.value);
    }
    invocation.invoke_async(conn).await
}

/// One entry of a dead-letter stream, split into metadata and original fields.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// Its id in the dead-letter stream.
    pub id: String,
    /// `dlq.*` metadata, names without the prefix kept as stored.
    pub metadata: Vec<(String, String)>,
    /// The original fields, names without `msg.`, values byte for byte.
    pub fields: Vec<(String, Vec<u8>)>,
}

impl DeadLetter {
    /// A metadata value by its full name (see [`meta`]).
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Splits a stream entry into metadata and original fields.
    pub fn from_entry(e: entry::Entry) -> DeadLetter {
        let mut metadata = Vec::new();
        let mut fields = Vec::new();
        for f in e.fields.unwrap_or_default() {
            if let Some(name) = f.name.strip_prefix(FIELD_PREFIX) {
                fields.push((name.to_owned(), f.value));
            } else {
                metadata.push((f.name, String::from_utf8_lossy(&f.value).into_owned()));
            }
        }
        DeadLetter {
            id: e.id,
            metadata,
            fields,
        }
    }
}

/// Reads up to `count` dead letters from `start` (inclusive; `-` for the beginning).
pub async fn list<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    start: &str,
    count: usize,
) -> Result<Vec<DeadLetter>, crate::Error> {
    let reply: Value = redis::cmd("XRANGE")
        .arg(dlq_stream)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let Value::Array(items) = reply else {
        return Ok(Vec::new());
    };
    items
        .into_iter()
        .map(|v| entry::parse_entry(v, 0).map(DeadLetter::from_entry))
        .collect::<Result<_, _>>()
        .map_err(|e| crate::Error::Other(e.to_string()))
}

/// One dead letter by id.
pub async fn show<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    id: &str,
) -> Result<Option<DeadLetter>, crate::Error> {
    let mut found = list(conn, dlq_stream, id, 1).await?;
    Ok(found.pop().filter(|d| d.id == id))
}

/// Which dead letters to replay.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every entry.
    All,
    /// These DLQ entry ids.
    Ids(Vec<String>),
    /// Entries whose `dlq.reason` equals this, or starts with it followed by `:`
    /// (so `trap` selects every `trap:<kind>`).
    Reason(String),
}

impl Selection {
    fn matches(&self, d: &DeadLetter) -> bool {
        match self {
            Selection::All => true,
            Selection::Ids(ids) => ids.contains(&d.id),
            Selection::Reason(r) => d.meta(meta::REASON).is_some_and(|x| {
                x == r
                    || x.strip_prefix(r.as_str())
                        .is_some_and(|rest| rest.starts_with(':'))
            }),
        }
    }
}

/// Replay totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReplayReport {
    /// Put back on their source stream.
    pub replayed: u64,
    /// Not selected.
    pub skipped: u64,
}

/// Puts selected dead letters back on their source streams, each atomically
/// with its removal from the DLQ. `progress` is called after every page.
pub async fn replay<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
    selection: &Selection,
    mut progress: impl FnMut(&ReplayReport),
) -> Result<ReplayReport, crate::Error> {
    const PAGE: usize = 500;
    let mut report = ReplayReport::default();
    let mut start = "-".to_owned();
    loop {
        let page = list(conn, dlq_stream, &start, PAGE).await?;
        let Some(last) = page.last() else { break };
        start = format!("({}", last.id);
        let full = page.len() == PAGE;
        for d in page {
            if !selection.matches(&d) {
                report.skipped += 1;
                continue;
            }
            let Some(source) = d.meta(meta::SOURCE_STREAM) else {
                return Err(crate::Error::Other(format!(
                    "dead letter {} has no {} field",
                    d.id,
                    meta::SOURCE_STREAM
                )));
            };
            if d.fields.is_empty() {
                return Err(crate::Error::Other(format!(
                    "dead letter {} has no original fields to replay",
                    d.id
                )));
            }
            let mut invocation = scripts::REPLAY.prepare_invoke();
            invocation.key(dlq_stream).key(source).arg(&d.id);
            for (name, value) in &d.fields {
                invocation.arg(name).arg(value);
            }
            let new_id: Option<String> = invocation.invoke_async(conn).await?;
            if new_id.is_some() {
                report.replayed += 1;
            }
        }
        progress(&report);
        if !full {
            break;
        }
    }
    Ok(report)
}

/// Deletes every entry of a dead-letter stream; returns how many.
pub async fn purge<C: ConnectionLike + Send>(
    conn: &mut C,
    dlq_stream: &str,
) -> Result<u64, crate::Error> {
    let n: u64 = redis::cmd("XTRIM")
        .arg(dlq_stream)
        .arg("MAXLEN")
        .arg(0)
        .query_async(conn)
        .await?;
    Ok(n)
}
