//! The acker: collects ids of entries handled with ok and acknowledges them
//! with one `XACK` per round trip, however many arrived meanwhile.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc::UnboundedReceiver;

use super::PluginContext;

/// Most ids in one `XACK`.
const MAX_IDS_PER_ACK: usize = 8192;
/// How long to keep retrying an ack while Redis is unreachable before leaving
/// the entries pending (they are then redelivered: at-least-once).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Acks until every sender is gone and the queue is empty.
pub async fn run(
    ctx: Arc<PluginContext>,
    mut ids: UnboundedReceiver<Vec<String>>,
    mut conn: ConnectionManager,
) {
    let mut pending: Vec<String> = Vec::new();
    while let Some(first) = ids.recv().await {
        pending.extend(first);
        while pending.len() < MAX_IDS_PER_ACK
            && let Ok(more) = ids.try_recv()
        {
            pending.extend(more);
        }
        for chunk in pending.chunks(MAX_IDS_PER_ACK) {
            ack(&ctx, &mut conn, chunk).await;
            // Acked, or left pending after giving up: either way this host is
            // done with them (the claimer re-claims what is still pending).
            ctx.inflight.release(chunk.iter().map(String::as_str));
        }
        pending.clear();
    }
}

async fn ack(ctx: &PluginContext, conn: &mut ConnectionManager, ids: &[String]) {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        let sent = std::time::Instant::now();
        let result: Result<u64, _> = redis::cmd("XACK")
            .arg(ctx.stream())
            .arg(ctx.group())
            .arg(ids)
            .query_async(conn)
            .await;
        match result {
            Ok(n) => {
                ctx.metrics
                    .ack_round_trip
                    .observe(sent.elapsed().as_secs_f64());
                ctx.metrics.acked.inc_by(n);
                ctx.metrics.observe_acked(ids.iter().map(String::as_str));
                return;
            }
            Err(e) if crate::streams::is_nogroup(&e) => {
                // The group vanished with its PEL: there is nothing left to ack.
                tracing::warn!(plugin = %ctx.plugin.name, count = ids.len(), "group gone while acking; the reader recreates it");
                return;
            }
            Err(e) if started.elapsed() < GIVE_UP_AFTER => {
                ctx.metrics.redis_error("ack");
                tracing::warn!(plugin = %ctx.plugin.name, error = %e, count = ids.len(), "ack failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(plugin = %ctx.plugin.name, error = %e, count = ids.len(),
                    "giving up acking; these handled entries stay pending and will be re-claimed and redelivered");
                return;
            }
        }
    }
}
