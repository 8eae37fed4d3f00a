//! The claimer: every `claim.interval_ms`, takes over entries that other
//! consumers left pending longer than `claim.min_idle_ms` (they are presumed
//! dead), keeps the entries this host still holds from looking abandoned,
//! re-claims own idle entries this host lost track of, removes long-idle
//! consumers that own nothing, and refreshes the pending gauge.

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use redis::Value;
use redis::streams::StreamPendingReply;
use tokio_util::sync::CancellationToken;

use super::group::Group;
use super::retry::{self, ReclaimError};
use crate::pipeline::intake::{Closed, Intake};
use crate::pipeline::source::Source;
use crate::pipeline::{Delivery, PluginContext, Uncounted};
use crate::redis_health::is_unreachable;
use crate::shutdown::pause;
use crate::streams::entry::{self, ReplyError};
use crate::streams::{self, Entry, scripts};

/// Why a claim round stopped early.
#[derive(Debug, thiserror::Error)]
enum ClaimError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    Closed(#[from] Closed),
}

impl From<ReclaimError> for ClaimError {
    fn from(e: ReclaimError) -> Self {
        match e {
            ReclaimError::Redis(e) => ClaimError::Redis(e),
            ReclaimError::Reply(e) => ClaimError::Reply(e),
        }
    }
}

/// Runs until shutdown.
pub(crate) async fn run<S: Source>(
    ctx: Arc<PluginContext>,
    key: Arc<str>,
    group: Arc<Group>,
    mut conn: Conn,
    intake: Intake<S>,
    shutdown: CancellationToken,
) {
    let interval = Duration::from_millis(ctx.config.claim.interval_ms);
    while pause(interval, &shutdown).await {
        // Paused: take over nothing either (the pending gauge still refreshes).
        if ctx.paused.is_paused() {
            if let Ok(pending) = pending_count(&ctx, &key, &mut conn).await {
                ctx.metrics.pending.set(pending);
            }
            continue;
        }
        match claim_abandoned(&ctx, &key, &mut conn, &intake, &shutdown).await {
            Ok(()) => {}
            Err(ClaimError::Closed(_)) => return,
            Err(ClaimError::Redis(e)) if streams::is_nogroup(&e) => {
                group.ensure(&mut conn, true, &shutdown).await;
                continue;
            }
            Err(ClaimError::Redis(e)) if is_unreachable(&e) => {
                ctx.redis_health.failed("claim", &e);
                continue;
            }
            Err(e) => {
                ctx.metrics.redis_error("claim");
                tracing::warn!(plugin = %ctx.plugin.name, error = %e, "claiming abandoned entries failed");
                continue;
            }
        }
        if let Err(e) = delete_idle_consumers(&ctx, &key, &mut conn).await {
            tracing::debug!(plugin = %ctx.plugin.name, error = %e, "idle consumer cleanup failed");
        }
        if let Ok(pending) = pending_count(&ctx, &key, &mut conn).await {
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
    /// Ids of own entries idle for [`keep_alive_ms`] but not yet `min_idle_ms`.
    own_aging: Vec<String>,
}

/// Own entries idle this long are refreshed if this host still holds them:
/// half of `claim.min_idle_ms`, so that a round or two of the claimer happen
/// before another host's claimer would see them as abandoned.
fn keep_alive_ms(ctx: &PluginContext) -> u64 {
    ctx.config.claim.min_idle_ms / 2
}

/// Walks the whole PEL, claiming what other consumers abandoned and
/// re-claiming own entries this host lost track of.
async fn claim_abandoned<S: Source>(
    ctx: &PluginContext,
    key: &Arc<str>,
    conn: &mut Conn,
    intake: &Intake<S>,
    shutdown: &CancellationToken,
) -> Result<(), ClaimError> {
    let mut cursor = "-".to_owned();
    loop {
        let step = claim_step(ctx, key, conn, &cursor).await?;
        if !step.deleted.is_empty() {
            ctx.metrics.trimmed.inc_by(step.deleted.len() as u64);
            tracing::warn!(plugin = %ctx.plugin.name, count = step.deleted.len(), "abandoned entries were deleted or trimmed while pending; dropped from the group");
        }
        if !step.claimed.is_empty() {
            ctx.metrics.claimed.inc_by(step.claimed.len() as u64);
            tracing::info!(plugin = %ctx.plugin.name, count = step.claimed.len(), "claimed entries abandoned by other consumers");
            let claimed = step
                .claimed
                .into_iter()
                .map(|e| Delivery::new(key.clone(), e))
                .collect();
            intake.submit(claimed).await?;
        }
        keep_alive(ctx, key, conn, &step.own_idle, &step.own_aging).await?;
        recover_own(ctx, key, conn, intake, step.own_idle).await?;
        if step.next == "0-0" || shutdown.is_cancelled() {
            return Ok(());
        }
        cursor = step.next;
    }
}

async fn claim_step(
    ctx: &PluginContext,
    key: &str,
    conn: &mut Conn,
    cursor: &str,
) -> Result<Step, ClaimError> {
    let reply: Value = scripts::AUTOCLAIM
        .key(key)
        .arg(ctx.group())
        .arg(&ctx.consumer)
        .arg(ctx.config.claim.min_idle_ms)
        .arg(cursor)
        .arg(ctx.config.batch.min(MAX_PER_STEP))
        .arg(keep_alive_ms(ctx))
        .invoke_async(conn)
        .await?;
    let Value::Array(parts) = reply else {
        return Err(ReplyError("claim script returned an unexpected reply".into()).into());
    };
    let [next, claimed, deleted, own_idle, own_aging]: [Value; 5] = parts
        .try_into()
        .map_err(|_| ReplyError("claim script returned an unexpected reply".into()))?;
    Ok(Step {
        next: entry::parse_ids(Value::Array(vec![next]))?
            .pop()
            .unwrap_or_else(|| "0-0".to_owned()),
        claimed: entry::parse_claimed(claimed)?,
        deleted: entry::parse_ids(deleted)?,
        own_idle: entry::parse_ids(own_idle)?,
        own_aging: entry::parse_ids(own_aging)?,
    })
}

/// Resets the idle time of own entries this host still holds (queued, being
/// handled, waiting for a retry). Without it a live host that is merely busy
/// (a deep queue, a loaded machine) looks dead to the other hosts' claimers:
/// they take its entries, each take-over adds a delivery, and entries that
/// bounce between busy hosts are dead-lettered as out of attempts although
/// no handler failed. A host that died refreshes nothing, so its entries are
/// still claimed after `claim.min_idle_ms`.
async fn keep_alive(
    ctx: &PluginContext,
    key: &Arc<str>,
    conn: &mut Conn,
    idle: &[String],
    aging: &[String],
) -> Result<(), redis::RedisError> {
    let held: Vec<&String> = idle
        .iter()
        .chain(aging)
        .filter(|id| ctx.inflight.holds(key, id))
        .collect();
    if held.is_empty() {
        return Ok(());
    }
    let _refreshed: u64 = scripts::KEEP_ALIVE
        .key(&**key)
        .arg(ctx.group())
        .arg(&ctx.consumer)
        .arg(held)
        .invoke_async(conn)
        .await?;
    Ok(())
}

/// Re-claims this consumer's idle entries that this host does not hold: their
/// read reply was lost (a dropped connection, a timed-out read that Redis ran
/// later), or acking or dead-lettering them gave up. Entries it holds are
/// queued, being handled or waiting for a retry, and are left alone. Until
/// the reader has replayed the consumer's pending entries at start, they are
/// the reader's.
///
/// The delivery that left such an entry idle reached no handler of this host
/// (it would hold the entry until settled), so it is not counted as an attempt.
async fn recover_own<S: Source>(
    ctx: &PluginContext,
    key: &Arc<str>,
    conn: &mut Conn,
    intake: &Intake<S>,
    idle: Vec<String>,
) -> Result<(), ClaimError> {
    if !ctx.inflight.replayed() {
        return Ok(());
    }
    let lost: Vec<String> = idle
        .into_iter()
        .filter(|id| !ctx.inflight.holds(key, id))
        .collect();
    if lost.is_empty() {
        return Ok(());
    }
    let entries = retry::reclaim(ctx, conn, key, &lost).await?;
    if !entries.is_empty() {
        ctx.metrics.claimed.inc_by(entries.len() as u64);
        tracing::warn!(plugin = %ctx.plugin.name, count = entries.len(),
            "re-claimed own pending entries this host had lost track of (a lost read reply, or an ack or dead-letter that gave up)");
        let deliveries = entries
            .into_iter()
            .map(|e| Delivery {
                key: key.clone(),
                entry: e,
                uncounted: Uncounted {
                    unseen: 1,
                    refused: 0,
                },
                origin: Default::default(),
            })
            .collect();
        intake.submit(deliveries).await?;
    }
    Ok(())
}

async fn delete_idle_consumers(
    ctx: &PluginContext,
    key: &str,
    conn: &mut Conn,
) -> Result<(), redis::RedisError> {
    let removed: Vec<String> = scripts::DELETE_IDLE_CONSUMERS
        .key(key)
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

async fn pending_count(
    ctx: &PluginContext,
    key: &str,
    conn: &mut Conn,
) -> Result<i64, redis::RedisError> {
    let summary: StreamPendingReply = redis::cmd("XPENDING")
        .arg(key)
        .arg(ctx.group())
        .query_async(conn)
        .await?;
    Ok(i64::try_from(summary.count()).unwrap_or(i64::MAX))
}
