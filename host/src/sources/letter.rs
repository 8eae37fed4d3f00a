//! The fields of a dead letter written by a queue or Pub/Sub source, in the
//! DLQ's format (`dlq.` metadata, the payload as `msg.data`, byte for byte),
//! so `streamhost dlq ls/show` read them like a stream's. These sources add
//! the entry with a fixed number of fields, so one script (or one `XADD`)
//! writes it together with the removal from where the item was held.

use crate::dlq::{FIELD_PREFIX, meta};
use crate::pipeline::source::DeadLetterRequest;
use crate::pipeline::{Origin, PluginContext};

/// Field names and values, flat, for `XADD <dlq> * ...`: metadata, then
/// the origin's (the Pub/Sub channel and pattern, the sorted-set score),
/// then the original fields under `msg.`.
pub(crate) fn fields(ctx: &PluginContext, request: &DeadLetterRequest) -> Vec<Vec<u8>> {
    let original = &request.original;
    let extra = original.origin.dlq_fields();
    let reason = request.reason.label();
    let attempts = request.attempts.to_string();
    let time_ms = crate::display::now_ms().to_string();
    let source_id = original.id.as_deref().unwrap_or(&request.receipt.id);
    // A Pub/Sub letter names the plugin's source key (its first `subscribe`
    // name, which its DLQ and redelivery stream are named after), so a replay
    // finds the plugin's redelivery stream; the channel is in `dlq.channel`.
    let source_stream = match original.origin {
        Origin::Channel { .. } => ctx.stream(),
        _ => original.stream.as_str(),
    };
    let metadata: [(&str, &[u8]); 10] = [
        (meta::SOURCE_STREAM, source_stream.as_bytes()),
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
    for (name, value) in metadata.iter().chain(&extra) {
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

/// Where a queue source's dead-letter script is tried: the script moves the
/// item from where it is held to the DLQ in one step and returns the letter's
/// id, or nil when the item is no longer this consumer's.
pub(crate) struct ScriptedLetter<'a> {
    /// The script with its keys and arguments (the letter's fields last).
    pub(crate) invocation: redis::ScriptInvocation<'a>,
    /// What the item is called in log lines ("list item", "sorted-set member").
    pub(crate) what: &'static str,
    /// What becomes of it when the letter cannot be written now.
    pub(crate) left: &'static str,
}

/// Runs a dead-letter script with the host's backoff until it is written,
/// the item is gone, about 4 s of retries have passed or the host stops;
/// logs the outcome either way.
pub(crate) async fn write_scripted(
    ctx: &PluginContext,
    request: &DeadLetterRequest,
    conn: &crate::connection::Conn,
    shutdown: &tokio_util::sync::CancellationToken,
    letter: ScriptedLetter<'_>,
) {
    let mut backoff = crate::backoff::Backoff::new();
    loop {
        let mut conn = conn.clone();
        let reply: Result<Option<String>, _> = letter.invocation.invoke_async(&mut conn).await;
        match reply {
            Ok(Some(dlq_id)) => return written(ctx, request, &dlq_id),
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(plugin = %ctx.plugin.name, error = %e, "dead-lettering a {} failed; trying again", letter.what);
                if backoff.next_delay() > std::time::Duration::from_secs(4)
                    || shutdown.is_cancelled()
                {
                    return not_written(ctx, request, Some(&e), letter.left);
                }
                backoff.sleep().await;
            }
        }
    }
}
