//! The acker: collects receipts of entries handled with ok and acknowledges
//! them with one `XACK` per key and round trip, however many arrived meanwhile.

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::backoff::Backoff;
use crate::pipeline::{PluginContext, Receipt};

/// Most ids in one `XACK`.
const MAX_IDS_PER_ACK: usize = 8192;
/// How long to keep retrying an ack while Redis is unreachable before leaving
/// the entries pending (they are then redelivered: at-least-once).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Acks until every sender is gone and the queue is empty.
pub(crate) async fn run(
    ctx: Arc<PluginContext>,
    mut receipts: UnboundedReceiver<Vec<Receipt>>,
    mut conn: Conn,
) {
    let mut pending: Vec<Receipt> = Vec::new();
    while let Some(first) = receipts.recv().await {
        pending.extend(first);
        while pending.len() < MAX_IDS_PER_ACK
            && let Ok(more) = receipts.try_recv()
        {
            pending.extend(more);
        }
        // Almost always one key; entries of another key go in their own XACK.
        while let Some(key) = pending.first().map(|r| r.key.clone()) {
            let (same, rest): (Vec<Receipt>, Vec<Receipt>) =
                pending.into_iter().partition(|r| r.key == key);
            pending = rest;
            let ids: Vec<&str> = same.iter().map(|r| r.id.as_str()).collect();
            for chunk in ids.chunks(MAX_IDS_PER_ACK) {
                ack(&ctx, &mut conn, &key, chunk).await;
                // Acked, or left pending after giving up: either way this host is
                // done with them (the claimer re-claims what is still pending).
                ctx.inflight.release(&key, chunk.iter().copied());
            }
        }
    }
}

async fn ack(ctx: &PluginContext, conn: &mut Conn, key: &str, ids: &[&str]) {
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new();
    loop {
        let sent = std::time::Instant::now();
        let result: Result<u64, _> = redis::cmd("XACK")
            .arg(key)
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
                return;
            }
            Err(e) if crate::streams::is_nogroup(&e) => {
                // The group vanished with its PEL: there is nothing left to ack.
                tracing::warn!(plugin = %ctx.plugin.name, count = ids.len(), "group gone while acking; the reader recreates it");
                return;
            }
            Err(e) if started.elapsed() < GIVE_UP_AFTER => {
                ctx.metrics.redis_error("ack");
                if crate::redis_health::is_unreachable(&e) {
                    ctx.redis_health.failed("ack", &e);
                } else {
                    tracing::warn!(plugin = %ctx.plugin.name, error = %e, count = ids.len(), "ack failed; retrying");
                }
                backoff.sleep().await;
            }
            Err(e) => {
                tracing::error!(plugin = %ctx.plugin.name, error = %e, count = ids.len(),
                    "giving up acking; these handled entries stay pending and will be re-claimed and redelivered");
                return;
            }
        }
    }
}
