//! Writing one dead letter: the entry's fields byte for byte and its
//! metadata go to the DLQ atomically with the ack, only while this consumer
//! still owns the entry.
//!
//! One `MULTI`: the `XADD` of the whole entry (sent by the client, so an
//! entry of any number of fields fits: Lua's `unpack` stops at about 4,000),
//! then the finishing script, which acks, or removes the new DLQ entry when
//! the entry is no longer ours. Redis runs a `MULTI` with nothing in between,
//! and refuses it whole when out of memory.

use redis::aio::ConnectionLike;

use super::{DlqError, FIELD_PREFIX, FieldBytes, meta, nonce};
use crate::streams::scripts;

/// What to dead-letter, and where it is pending.
#[derive(Debug)]
pub struct Letter<'a, F> {
    /// The stream the entry is pending in (the source stream, or the
    /// plugin's redelivery stream for a replayed entry).
    pub pending_stream: &'a str,
    /// Its id there.
    pub pending_id: &'a str,
    /// The consumer group.
    pub group: &'a str,
    /// The consumer that must own the entry.
    pub consumer: &'a str,
    /// The dead-letter stream.
    pub dlq: &'a str,
    /// The stream the entry was first written to.
    pub source_stream: &'a str,
    /// Its id there (differs from `pending_id` for a replayed entry).
    pub source_id: &'a str,
    /// The plugin name.
    pub plugin: &'a str,
    /// The digest of the component that handled the last attempt.
    pub digest: &'a str,
    /// The reason label (see [`crate::dispatch::DeadReason::label`]).
    pub reason: &'a str,
    /// The last error text (already bounded and sanitized).
    pub error: &'a str,
    /// Deliveries made, the last included.
    pub attempts: u32,
    /// The original fields.
    pub fields: &'a [F],
    /// Metadata of the entry's origin besides the stream (a Pub/Sub
    /// message's `dlq.channel` and `dlq.pattern`, a sorted-set member's
    /// `dlq.score`), for a replayed entry of those sources.
    pub origin: &'a [(&'a str, &'a [u8])],
}

/// What became of a dead-lettering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// In the DLQ under this id, and acked.
    Moved(String),
    /// Another consumer owns the entry now (or it was acked): nothing written.
    NotOwner,
}

/// Dead-letters one entry (one attempt; the caller decides about retrying).
/// On any error nothing was written and the entry stays pending.
pub async fn dead_letter<C, F>(conn: &mut C, req: &Letter<'_, F>) -> Result<Written, DlqError>
where
    C: ConnectionLike + Send,
    F: FieldBytes,
{
    let nonce = nonce();
    let attempts = req.attempts.to_string();
    let time_ms = crate::display::now_ms().to_string();
    let mut xadd = redis::cmd("XADD");
    xadd.arg(req.dlq).arg("*");
    // The nonce first: the finishing script looks for it there.
    let mut metadata = vec![
        (meta::NONCE, nonce.as_str()),
        (meta::SOURCE_STREAM, req.source_stream),
        (meta::SOURCE_ID, req.source_id),
        (meta::GROUP, req.group),
        (meta::CONSUMER, req.consumer),
        (meta::PLUGIN, req.plugin),
        (meta::DIGEST, req.digest),
        (meta::REASON, req.reason),
        (meta::ERROR, req.error),
        (meta::ATTEMPTS, attempts.as_str()),
        (meta::TIME_MS, time_ms.as_str()),
    ];
    if req.pending_stream != req.source_stream {
        metadata.push((meta::REDELIVERY_ID, req.pending_id));
    }
    for (name, value) in metadata {
        xadd.arg(name).arg(value);
    }
    for (name, value) in req.origin {
        xadd.arg(*name).arg(*value);
    }
    push_fields(&mut xadd, req.fields);
    let mut finish = redis::cmd("EVAL");
    finish
        .arg(scripts::DEAD_LETTER)
        .arg(2)
        .arg(req.pending_stream)
        .arg(req.dlq)
        .arg(req.group)
        .arg(req.consumer)
        .arg(req.pending_id)
        .arg(&nonce);
    let mut pipe = redis::pipe();
    pipe.atomic().add_command(xadd).ignore().add_command(finish);
    let (dlq_id,): (Option<String>,) = pipe.query_async(conn).await.map_err(|e| {
        if e.code() == Some("DLQNOTWRITTEN") {
            DlqError::NotWritten
        } else {
            DlqError::Redis(e)
        }
    })?;
    Ok(dlq_id.map_or(Written::NotOwner, Written::Moved))
}

/// Appends `msg.<name> value` pairs, names and values as bytes.
pub(super) fn push_fields<F: FieldBytes>(cmd: &mut redis::Cmd, fields: &[F]) {
    let mut name = Vec::new();
    for f in fields {
        name.clear();
        name.extend_from_slice(FIELD_PREFIX.as_bytes());
        name.extend_from_slice(f.name_bytes());
        cmd.arg(name.as_slice()).arg(f.value_bytes());
    }
}
