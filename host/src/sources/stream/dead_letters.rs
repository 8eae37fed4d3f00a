//! Dead letters that could not be written at once (Redis out of memory or
//! unreachable): retried here in the background with the host's backoff, so
//! the worker that decided them goes on with other entries. The entries stay
//! pending (and held by this host) until written; one that still cannot be
//! written after [`GIVE_UP_AFTER`] is let go, stays pending, and is
//! re-claimed and settled again later by the claimer.

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::pipeline::PluginContext;
use crate::pipeline::source::DeadLetterRequest;
use crate::{dlq, streams};

/// How long one dead letter is retried before it is let go.
pub(crate) const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Retries deferred dead letters until every sender is gone.
pub(crate) async fn run(
    ctx: Arc<PluginContext>,
    mut requests: UnboundedReceiver<DeadLetterRequest>,
    mut conn: Conn,
    shutdown: CancellationToken,
) {
    while let Some(request) = requests.recv().await {
        let started = tokio::time::Instant::now();
        let mut backoff = Backoff::new();
        loop {
            if !backoff.wait(&shutdown).await || started.elapsed() >= GIVE_UP_AFTER {
                crate::sources::letter::not_written(
                    &ctx,
                    &request,
                    None,
                    "the entry stays pending and is settled again after a re-claim",
                );
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
    conn: &mut Conn,
    request: &DeadLetterRequest,
) -> Result<(), dlq::DlqError> {
    let receipt = &request.receipt;
    let original = &request.original;
    let reason = request.reason.label();
    let origin = original.origin.dlq_fields();
    let letter = dlq::Letter {
        pending_stream: &receipt.key,
        pending_id: &receipt.id,
        group: ctx.group(),
        consumer: &ctx.consumer,
        dlq: &ctx.dlq_stream,
        source_stream: &original.stream,
        source_id: original.id.as_deref().unwrap_or(&receipt.id),
        plugin: &ctx.plugin.name,
        digest: &request.digest,
        reason: &reason,
        error: &request.error,
        attempts: request.attempts,
        fields: &original.fields,
        origin: &origin,
    };
    let (plugin, id) = (&*ctx.plugin.name, receipt.id.as_str());
    match dlq::dead_letter(conn, &letter).await {
        Ok(dlq::Written::Moved(dlq_id)) => {
            crate::sources::letter::written(ctx, request, &dlq_id);
        }
        Ok(dlq::Written::NotOwner) => {
            tracing::info!(
                plugin,
                id,
                "entry was claimed by another consumer meanwhile; leaving it to that consumer"
            );
        }
        Err(dlq::DlqError::Redis(e)) if streams::is_nogroup(&e) => {
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
