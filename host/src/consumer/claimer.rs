//! The claimer: every `claim.interval_ms`, takes over entries that other
//! consumers left pending longer than `claim.min_idle_ms` (they are presumed
//! dead), re-claims own idle entries this host lost track of, removes
//! long-idle consumers that own nothing, and refreshes the pending gauge.

use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::{Batch, PluginContext, ensure_group_logged, pause, reader::dispatch, retry};
use crate::streams::{self, Entry, entry, scripts};

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
        // Paused: take over nothing either (the pending gauge still refreshes).
        if ctx.paused.is_paused() {
            if let Ok(pending) = pending_count(&ctx, &mut conn).await {
                ctx.metrics.pending.set(pending);
            }
            continue;
        }
        if let Err(e) = claim_abandoned(&ctx, &mut conn, &work, &shutdown).await {
            ctx.metrics.redis_error("claim");
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

/// Most pending entries one script call examines: bounds its run time and
/// the ids handed to one `XCLAIM`.
const MAX_PER_STEP: usize = 500;

/// What one step of the walk over the PEL found.
struct Step {
    /// Where the next step starts; `0-0` when the walk is complete.
    next: String,
    /// Entries claimed from other consumers, with their delivery counts.
    claimed: Vec<Entry>,
    /// Ids that were deleted or trimmed while pending (now dropped from the PEL).
    deleted: Vec<String>,
    /// Ids of this consumer's own idle entries (not claimed by the script).
    own_idle: Vec<String>,
}

/// Walks the whole PEL, claiming what other consumers abandoned and
/// re-claiming own entries this host lost track of.
async fn claim_abandoned(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    work: &async_channel::Sender<Batch>,
    shutdown: &CancellationToken,
) -> Result<(), BoxError> {
    let mut cursor = "-".to_owned();
    loop {
        let step = claim_step(ctx, conn, &cursor).await?;
        if !step.deleted.is_empty() {
            ctx.metrics.trimmed.inc_by(step.deleted.len() as u64);
            tracing::warn!(plugin = %ctx.plugin.name, count = step.deleted.len(), "abandoned entries were deleted or trimmed while pending; dropped from the group");
        }
        if !step.claimed.is_empty() {
            ctx.metrics.claimed.inc_by(step.claimed.len() as u64);
            tracing::info!(plugin = %ctx.plugin.name, count = step.claimed.len(), "claimed entries abandoned by other consumers");
            let claimed = ctx.inflight.admit(step.claimed);
            dispatch(ctx, conn, work, claimed).await?;
        }
        recover_own(ctx, conn, work, step.own_idle).await?;
        if step.next == "0-0" || shutdown.is_cancelled() {
            return Ok(());
        }
        cursor = step.next;
    }
}

async fn claim_step(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    cursor: &str,
) -> Result<Step, BoxError> {
    let reply: Value = scripts::AUTOCLAIM
        .key(ctx.stream())
        .arg(ctx.group())
        .arg(&ctx.consumer)
        .arg(ctx.config.claim.min_idle_ms)
        .arg(cursor)
        .arg(ctx.config.batch.min(MAX_PER_STEP))
        .invoke_async(conn)
        .await?;
    let Value::Array(parts) = reply else {
        return Err("claim script returned an unexpected reply".into());
    };
    let [next, claimed, deleted, own_idle]: [Value; 4] = parts
        .try_into()
        .map_err(|_| "claim script returned an unexpected reply")?;
    Ok(Step {
        next: entry::parse_ids(Value::Array(vec![next]))?
            .pop()
            .unwrap_or_else(|| "0-0".to_owned()),
        claimed: entry::parse_claimed(claimed)?,
        deleted: entry::parse_ids(deleted)?,
        own_idle: entry::parse_ids(own_idle)?,
    })
}

/// Re-claims this consumer's idle entries that this host does not hold: their
/// read reply was lost (a dropped connection, a Redis restart), or acking or
/// dead-lettering them gave up. Entries it holds are queued, being handled or
/// waiting for a retry, and are left alone. Until the reader has replayed the
/// consumer's pending entries at start, they are the reader's.
async fn recover_own(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    work: &async_channel::Sender<Batch>,
    idle: Vec<String>,
) -> Result<(), BoxError> {
    if !ctx.inflight.replayed() {
        return Ok(());
    }
    let lost: Vec<String> = idle
        .into_iter()
        .filter(|id| !ctx.inflight.holds(id))
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    let entries = retry::reclaim(ctx, conn, &lost).await?;
    if !entries.is_empty() {
        ctx.metrics.claimed.inc_by(entries.len() as u64);
        tracing::warn!(plugin = %ctx.plugin.name, count = entries.len(),
            "re-claimed own pending entries this host had lost track of (a lost read reply, or an ack or dead-letter that gave up)");
        let entries = ctx.inflight.admit(entries);
        dispatch(ctx, conn, work, entries).await?;
    }
    Ok(())
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
