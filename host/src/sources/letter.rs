//! The fields of a dead letter written by a queue or Pub/Sub source, in the
//! DLQ's format (`dlq.` metadata, the payload as `msg.data`, byte for byte),
//! so `streamhost dlq ls/show` read them like a stream's. These sources add
//! the entry with a fixed number of fields, so one script (or one `XADD`)
//! writes it together with the removal from where the item was held.

use crate::dlq::{FIELD_PREFIX, meta};
use crate::pipeline::PluginContext;
use crate::pipeline::source::DeadLetterRequest;

/// Field names and values, flat, for `XADD <dlq> * ...`: metadata, then
/// `extra` (e.g. the Pub/Sub channel and pattern), then the original fields
/// under `msg.`.
pub(crate) fn fields(
    ctx: &PluginContext,
    request: &DeadLetterRequest,
    extra: &[(&str, &[u8])],
) -> Vec<Vec<u8>> {
    let original = &request.original;
    let reason = request.reason.label();
    let attempts = request.attempts.to_string();
    let time_ms = crate::display::now_ms().to_string();
    let source_id = original.id.as_deref().unwrap_or(&request.receipt.id);
    let metadata: [(&str, &[u8]); 10] = [
        (meta::SOURCE_STREAM, original.stream.as_bytes()),
        (meta::SOURCE_ID, source_id.as_bytes()),
        (meta::GROUP, ctx.group().as_bytes()),
        (meta::CONSUMER, ctx.consumer.as_bytes()),
        (meta::PLUGIN, ctx.plugin.name.as_bytes()),
        (meta::DIGEST, request.digest.as_bytes()),
        (meta::REASON, reason.as_bytes()),
        (meta::ERROR, request.error.as_bytes()),
        (meta::ATTEMPTS, attempts.as_bytes()),
        (meta::TIME_MS, time_ms.as_bytes()),
    ];
    let mut out = Vec::with_capacity(2 * (metadata.len() + extra.len() + original.fields.len()));
    for (name, value) in metadata.iter().chain(extra) {
        out.push(name.as_bytes().to_vec());
        out.push(value.to_vec());
    }
    for f in &original.fields {
        out.push([FIELD_PREFIX.as_bytes(), &f.name].concat());
        out.push(f.value.clone());
    }
    out
}

/// Counts a written dead letter and logs its one INFO line (settle logs
/// none for a rejection or a last retry): which plugin, key, version and
/// entry, why, and where the letter went. Every source calls this once the
/// letter is in its DLQ.
pub(crate) fn written(ctx: &PluginContext, request: &DeadLetterRequest, dlq_id: &str) {
    let reason = request.reason.label();
    ctx.metrics.dead_lettered_for(&reason);
    tracing::info!(
        plugin = &*ctx.plugin.name,
        // A replayed entry's stream is the one it was first written to.
        stream = request.original.stream,
        version = request.digest,
        id = request.receipt.id,
        attempt = request.attempts,
        reason,
        error = request.error,
        dlq = ctx.dlq_stream,
        dlq_id,
        "dead-lettered"
    );
}

/// Logs a dead letter that could not be written for now, with what the
/// `dead-lettered` line would have said (the handler's reason lives nowhere
/// else), and what becomes of the entry.
pub(crate) fn not_written(
    ctx: &PluginContext,
    request: &DeadLetterRequest,
    cause: Option<&redis::RedisError>,
    what_happens: &str,
) {
    tracing::warn!(
        plugin = &*ctx.plugin.name,
        stream = &*request.receipt.key,
        version = request.digest,
        id = request.receipt.id,
        attempt = request.attempts,
        reason = request.reason.label(),
        error = request.error,
        dlq = ctx.dlq_stream,
        cause = cause.map(tracing::field::display),
        "cannot dead-letter: {what_happens}"
    );
}
