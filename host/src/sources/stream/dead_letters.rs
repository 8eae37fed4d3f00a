//! Dead letters that could not be written at once (Redis out of memory or
//! unreachable): retried here in the background with the host's backoff, so
//! the worker that decided them goes on with other entries. The entries stay
//! pending (and held by this host) until written; one that still cannot be
//! written after [`GIVE_UP_AFTER`] is let go, stays pending, and is
//! re-claimed and settled again later by the claimer.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::pipeline::PluginContext;
use crate::pipeline::source::DeadLetterRequest;
use crate::{dlq, streams};

/// How long one dead letter is retried before it is let go.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Retries deferred dead letters until every sender is gone.
pub async fn run(
    ctx: Arc<PluginContext>,
    mut requests: UnboundedReceiver<DeadLetterRequest>,
    mut conn: ConnectionManager,
    shutdown: CancellationToken,
) {
    while let Some(request) = requests.recv().await {
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new();
        loop {
            if !backoff.wait(&shutdown).await || started.elapsed() >= GIVE_UP_AFTER {
                tracing::warn!(plugin = %ctx.plugin.name, id = request.receipt.id,
                    "cannot dead-letter yet; the entry stays pending and is settled again after a re-claim");
                ctx.inflight
                    .release(&request.receipt.key, [request.receipt.id.as_str()]);
                break;
            }
            match write(&ctx, &mut conn, &request).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::debug!(plugin = %ctx.plugin.name, id = request.receipt.id, error = %e, "dead-lettering failed again");
                }
            }
        }
    }
}

/// Writes one dead letter; `Err` when Redis refused or could not be reached.
pub(crate) async fn write(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    request: &DeadLetterRequest,
) -> Result<(), redis::RedisError> {
    let letter = dlq::Letter {
        source_stream: &request.receipt.key,
        dlq_stream: &ctx.dlq_stream,
        group: ctx.group(),
        consumer: &ctx.consumer,
        plugin: &ctx.plugin.name,
        digest: &request.digest,
        reason: &request.reason,
        error: &request.error,
        attempts: request.attempts,
        message: &request.message,
    };
    let (plugin, id) = (&*ctx.plugin.name, request.receipt.id.as_str());
    match dlq::dead_letter(conn, &letter).await {
        Ok(Some(dlq_id)) => {
            ctx.metrics.dead_lettered_for(&request.reason.label());
            tracing::info!(plugin, id, attempt = request.attempts, reason = %request.reason.label(), error = request.error, dlq_id, "dead-lettered");
        }
        Ok(None) => {
            tracing::info!(
                plugin,
                id,
                "entry was claimed by another consumer meanwhile; leaving it to that consumer"
            );
        }
        Err(e) if streams::is_nogroup(&e) => {
            tracing::warn!(
                plugin,
                id,
                "group gone while dead-lettering; the reader recreates it"
            );
        }
        Err(e) => {
            ctx.metrics.redis_error("dead_letter");
            return Err(e);
        }
    }
    ctx.inflight
        .release(&request.receipt.key, [request.receipt.id.as_str()]);
    Ok(())
}
