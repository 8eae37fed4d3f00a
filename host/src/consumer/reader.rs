//! The reader: `XREADGROUP` on a connection of its own (a blocking read would
//! stall every command queued behind it), first this consumer's own pending
//! entries, then new ones. The next read is issued while workers handle the
//! previous batch (the work queue holds a few batches). Replies are parsed
//! straight from their bytes ([`streams::wire`]): at high rates the generic
//! redis-rs reply tree cost more CPU than the handlers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::{Batch, PluginContext, ensure_group_logged, pause};
use crate::dispatch::DeadReason;
use crate::dlq;
use crate::plugin::Message;
use crate::streams::wire::{WireConnection, WireError};
use crate::streams::{self, Entry};

/// Delay before reading again after an error.
const ERROR_DELAY: Duration = Duration::from_millis(500);

/// Reads until shutdown; returns when the work queue is closed or shutdown fires.
pub async fn run(
    ctx: Arc<PluginContext>,
    redis_url: String,
    read_timeout: Duration,
    mut commands: ConnectionManager,
    work: async_channel::Sender<Batch>,
    shutdown: CancellationToken,
) {
    if let Some(policy) = streams::eviction_policy(&mut commands).await {
        tracing::warn!(plugin = %ctx.plugin.name, policy,
            "Redis maxmemory-policy is {policy}: under memory pressure Redis may evict this stream \
             with its consumer group and pending entries; use noeviction for streams you cannot lose");
    }
    let mut cursor = Some("0".to_owned()); // Some: still replaying our own pending entries.
    let mut reading = None;
    while !shutdown.is_cancelled() {
        // Paused: read nothing new; what was read finishes.
        if ctx.paused.is_paused() && !ctx.paused.wait_running(&shutdown).await {
            break;
        }
        let id = cursor.as_deref().unwrap_or(">");
        let block = cursor.is_none().then_some(ctx.config.block_ms);
        let read = read_batch(&ctx, &mut reading, &redis_url, read_timeout, id, block);
        let result = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = read => r,
        };
        let mut entries = match result {
            Ok(entries) => entries,
            Err(e) => {
                if e.is_nogroup() {
                    ensure_group_logged(&ctx, &mut commands, true).await;
                    continue;
                }
                ctx.metrics.redis_error("read");
                tracing::warn!(plugin = %ctx.plugin.name, error = %e, "read failed; retrying");
                if !pause(ERROR_DELAY, &shutdown).await {
                    break;
                }
                continue;
            }
        };
        if let Some(from) = &cursor {
            if entries.is_empty() {
                tracing::debug!(plugin = %ctx.plugin.name, "own pending entries replayed; reading new entries");
                cursor = None;
                ctx.inflight.set_replayed();
                continue;
            }
            let last = entries.last().map(|e| e.id.clone());
            if let Err(e) = fill_attempts(&ctx, &mut commands, &mut entries).await {
                tracing::warn!(plugin = %ctx.plugin.name, error = %e, from, "cannot read delivery counts; assuming a redelivery");
                for entry in &mut entries {
                    entry.attempt = entry.attempt.max(2);
                }
            }
            cursor = last;
        }
        if entries.is_empty() {
            continue;
        }
        let entries = ctx.inflight.admit(entries);
        if dispatch(&ctx, &mut commands, &work, entries).await.is_err() {
            break;
        }
    }
}

/// Reads one batch, (re)connecting first when there is no usable connection.
async fn read_batch(
    ctx: &PluginContext,
    reading: &mut Option<WireConnection>,
    url: &str,
    timeout: Duration,
    id: &str,
    block_ms: Option<u64>,
) -> Result<Vec<Entry>, WireError> {
    let conn = match reading {
        Some(conn) if !conn.is_broken() => conn,
        _ => reading.insert(WireConnection::connect(url, timeout).await?),
    };
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(ctx.group())
        .arg(&ctx.consumer)
        .arg("COUNT")
        .arg(ctx.config.batch);
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms);
    }
    cmd.arg("STREAMS").arg(ctx.stream()).arg(id);
    let started = std::time::Instant::now();
    let entries = conn.read_entries(&cmd, timeout, 1).await?;
    // An empty reply mostly measures the BLOCK wait, not Redis.
    if !entries.is_empty() {
        ctx.metrics
            .read_round_trip
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(entries)
}

/// Replayed pending entries carry their delivery count in the PEL, not in the
/// read reply: look them up in one `XPENDING` range query.
async fn fill_attempts(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    entries: &mut [Entry],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    let rows: Vec<(String, String, u64, u32)> = redis::cmd("XPENDING")
        .arg(ctx.stream())
        .arg(ctx.group())
        .arg(&first.id)
        .arg(&last.id)
        .arg(entries.len())
        .arg(&ctx.consumer)
        .query_async(conn)
        .await?;
    let counts: HashMap<String, u32> = rows.into_iter().map(|(id, _, _, n)| (id, n)).collect();
    for e in entries.iter_mut() {
        e.attempt = counts.get(&e.id).copied().unwrap_or(2).max(1);
    }
    Ok(())
}

/// Hands entries this host holds (see [`InFlight::admit`](super::inflight::InFlight::admit)) to the workers.
/// Entries delivered more often than `retry.max_attempts` allows are
/// dead-lettered without another run: their last delivery ended without an
/// outcome (a host died or stopped while handling it), and an entry that
/// kills its hosts must not go round them forever.
pub(crate) async fn dispatch(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    work: &async_channel::Sender<Batch>,
    entries: Vec<Entry>,
) -> Result<(), async_channel::SendError<Batch>> {
    let max = ctx.config.retry.max_attempts;
    let (over, entries): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|e| e.attempt > max && e.fields.is_some());
    for entry in over {
        dead_letter_unhandled(ctx, conn, entry).await;
    }
    if entries.is_empty() {
        return Ok(());
    }
    send_split(ctx, work, entries).await
}

async fn dead_letter_unhandled(ctx: &PluginContext, conn: &mut ConnectionManager, entry: Entry) {
    let msg = Message {
        stream: ctx.config.stream.clone(),
        id: entry.id,
        fields: entry.fields.unwrap_or_default(),
        attempt: entry.attempt,
    };
    let error = format!(
        "delivered {} times, more than retry.max_attempts = {} allows; \
         the last delivery ended without an outcome (a host died or stopped while handling it)",
        msg.attempt, ctx.config.retry.max_attempts
    );
    let digest = ctx.running().digest.clone();
    dlq::dead_letter(
        ctx,
        conn,
        &msg,
        &DeadReason::AttemptsExhausted,
        &error,
        &digest,
    )
    .await;
    ctx.inflight.release([msg.id.as_str()]);
}

/// Splits a batch so every worker gets a share, and queues the parts.
pub(crate) async fn send_split(
    ctx: &PluginContext,
    work: &async_channel::Sender<Batch>,
    mut entries: Vec<Entry>,
) -> Result<(), async_channel::SendError<Batch>> {
    let workers = ctx.config.concurrency.max(1);
    let chunk = entries.len().div_ceil(workers).max(1);
    while entries.len() > chunk {
        let rest = entries.split_off(chunk);
        work.send(entries).await?;
        entries = rest;
    }
    work.send(entries).await
}
