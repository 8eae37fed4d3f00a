//! Dead-lettering from the consumer: one [`dlq::dead_letter`] write for a
//! pending entry, with the log line and the metric, tried again with backoff
//! while Redis is unreachable.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::PluginContext;
use crate::dispatch::DeadReason;
use crate::dlq::{self, DlqError, FieldBytes, Letter, Written};
use crate::streams::entry::RawField;

/// Where a replayed entry first came from: its stream and id there.
pub(crate) type Origin = (String, String);

/// The original fields of an entry, and its origin when it is a replayed one
/// read from the plugin's redelivery stream (`None`: the stream read is its
/// origin).
pub(crate) fn unwrap_redelivered(
    ctx: &PluginContext,
    fields: Vec<RawField>,
) -> (Vec<RawField>, Option<Origin>) {
    let Some(source_stream) = &ctx.redelivery_of else {
        return (fields, None);
    };
    let r = dlq::redeliver::decode(fields);
    let stream = r.source_stream.unwrap_or_else(|| source_stream.clone());
    (r.fields, r.source_id.map(|id| (stream, id)))
}

/// Tries to dead-letter for this long while Redis is unreachable; after that
/// the entry stays pending and is redelivered (and dead-lettered again).
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

/// An entry pending for this consumer, with where it first came from.
pub(crate) struct Pending<'a> {
    /// Its id in the stream this instance reads.
    pub id: &'a str,
    /// Deliveries made, the last included.
    pub attempt: u32,
    /// The stream it was first written to and its id there (differ from the
    /// stream read and `id` for a replayed entry).
    pub source: (&'a str, &'a str),
}

/// Moves a pending entry to the plugin's DLQ and acks it, if this consumer
/// still owns it. Failures leave the entry pending (never lost).
pub(crate) async fn dead_letter<F: FieldBytes>(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    entry: Pending<'_>,
    fields: &[F],
    reason: &DeadReason,
    error: &str,
    digest: &str,
) {
    let label = reason.label();
    let letter = Letter {
        pending_stream: ctx.stream(),
        pending_id: entry.id,
        group: ctx.group(),
        consumer: &ctx.consumer,
        dlq: &ctx.dlq_stream,
        source_stream: entry.source.0,
        source_id: entry.source.1,
        plugin: &ctx.plugin.name,
        digest,
        reason: &label,
        error,
        attempts: entry.attempt,
        fields,
    };
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    let (plugin, id, dlq_stream) = (&*ctx.plugin.name, entry.id, ctx.dlq_stream.as_str());
    loop {
        match dlq::dead_letter(conn, &letter).await {
            Ok(Written::Moved(dlq_id)) => {
                ctx.metrics.dead_lettered.inc();
                tracing::info!(plugin, id, attempt = entry.attempt, reason = %label, error, dlq = dlq_stream, dlq_id, "dead-lettered");
                return;
            }
            Ok(Written::NotOwner) => {
                tracing::info!(
                    plugin,
                    id,
                    "entry was claimed by another consumer meanwhile; leaving it to that consumer"
                );
                return;
            }
            Err(DlqError::Redis(e))
                if started.elapsed() < GIVE_UP_AFTER && !crate::streams::is_nogroup(&e) =>
            {
                tracing::warn!(plugin, id, error = %e, "dead-lettering failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(plugin, id, error = %e, "cannot dead-letter; the entry stays pending and will be redelivered");
                return;
            }
        }
    }
}
