//! The claimer: every `claim.interval_ms`, takes over entries that other
//! consumers left pending longer than `claim.min_idle_ms` (they are presumed
//! dead), removes long-idle consumers that own nothing, and refreshes the
//! pending gauge.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::{Batch, PluginContext, ensure_group_logged, pause, reader::send_split};
use crate::streams::{self, entry, scripts};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs until shutdown.
pub async fn run(
    ctx: Arc<PluginContext>,
    mut conn: ConnectionManager,
    work: async_channel::Sender<Batch>,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_millis(ctx.config.claim.interval_ms);
    while pause(interval, &shutdown).await {
        if let Err(e) = claim_abandoned(&ctx, &mut conn, &work, &shutdown).await {
            match e.downcast_ref::<redis::RedisError>() {
                Some(r) if streams::is_nogroup(r) => {
                    ensure_group_logged(&ctx, &mut conn, true).await
                }
                _ => {
                    tracing::warn!(plugin = %ctx.plugin.name, error = %e, "claiming abandoned entries failed")
                }
            }
            continue;
        }
        if let Err(e) = delete_idle_consumers(&ctx, &mut conn).await {
            tracing::debug!(plugin = %ctx.plugin.name, error = %e, "idle consumer cleanup failed");
        }
        if let Ok(pending) = pending_count(&ctx, &mut conn).await {
            ctx.metrics.pending.set(pending);
        }
    }
}

/// Walks the whole PEL with `XAUTOCLAIM` (cursor until `0-0`).
async fn claim_abandoned(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    work: &async_channel::Sender<Batch>,
    shutdown: &CancellationToken,
) -> Result<(), BoxError> {
    let mut cursor = "0-0".to_owned();
    loop {
        let reply: Value = scripts::AUTOCLAIM
            .key(ctx.stream())
            .arg(ctx.group())
            .arg(&ctx.consumer)
            .arg(ctx.config.claim.min_idle_ms)
            .arg(&cursor)
            .arg(ctx.config.batch)
            .invoke_async(conn)
            .await?;
        let Value::Array(parts) = reply else {
            return Err("autoclaim script returned an unexpected reply".into());
        };
        let mut parts = parts.into_iter();
        let (Some(next), Some(claimed), Some(deleted)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err("autoclaim script returned an unexpected reply".into());
        };
        let claimed = entry::parse_claimed(claimed)?;
        let deleted = entry::parse_ids(deleted)?;
        if !deleted.is_empty() {
            ctx.metrics.trimmed.inc_by(deleted.len() as u64);
            tracing::warn!(plugin = %ctx.plugin.name, count = deleted.len(), "abandoned entries were deleted or trimmed while pending; dropped from the group");
        }
        if !claimed.is_empty() {
            ctx.metrics.claimed.inc_by(claimed.len() as u64);
            tracing::info!(plugin = %ctx.plugin.name, count = claimed.len(), "claimed entries abandoned by other consumers");
            send_split(ctx, work, claimed).await?;
        }
        cursor = entry::parse_ids(Value::Array(vec![next]))?
            .pop()
            .unwrap_or_default();
        if cursor == "0-0" || cursor.is_empty() || shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

async fn delete_idle_consumers(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
) -> Result<(), BoxError> {
    let removed: Vec<String> = scripts::DELETE_IDLE_CONSUMERS
        .key(ctx.stream())
        .arg(ctx.group())
        .arg(ctx.config.claim.delete_idle_consumers_ms)
        .arg(&ctx.consumer)
        .invoke_async(conn)
        .await?;
    for name in removed {
        tracing::info!(plugin = %ctx.plugin.name, consumer = %name, "removed idle consumer with no pending entries");
    }
    Ok(())
}

async fn pending_count(ctx: &PluginContext, conn: &mut ConnectionManager) -> Result<i64, BoxError> {
    let summary: Value = redis::cmd("XPENDING")
        .arg(ctx.stream())
        .arg(ctx.group())
        .query_async(conn)
        .await?;
    match summary {
        Value::Array(items) => match items.first() {
            Some(Value::Int(n)) => Ok(*n),
            _ => Err("unexpected XPENDING summary".into()),
        },
        _ => Err("unexpected XPENDING summary".into()),
    }
}
