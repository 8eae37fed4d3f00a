//! The reader: `XREADGROUP` on a connection of its own (a blocking read would
//! stall every command queued behind it), first this consumer's own pending
//! entries, then new ones. The next read is issued while workers handle the
//! previous batch (the work queue holds a few batches), as far as the
//! read-ahead byte budget allows. Replies are parsed straight from their
//! bytes ([`streams::wire`]): at high rates the generic redis-rs reply tree
//! cost more CPU than the handlers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::{Conn, Endpoint};
use redis::streams::StreamPendingCountReply;
use tokio_util::sync::CancellationToken;

use super::group::Group;
use crate::backoff::Backoff;
use crate::pipeline::intake::Intake;
use crate::pipeline::source::Source;
use crate::pipeline::{Delivery, PluginContext};
use crate::streams::wire::{WireConnection, WireError};
use crate::streams::{self, Entry};

/// Margin over `BLOCK` for the reader's response timeout, so a blocking read
/// is never mistaken for a dead connection.
pub(crate) const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// Reads `key` until shutdown, or until the work queue is closed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<S: Source>(
    ctx: Arc<PluginContext>,
    key: Arc<str>,
    group: Arc<Group>,
    redis: Endpoint,
    read_timeout: Duration,
    mut commands: Conn,
    intake: Intake<S>,
    shutdown: CancellationToken,
) {
    if let Some(policy) = streams::eviction_policy(&mut commands).await {
        tracing::warn!(plugin = %ctx.plugin.name, policy,
            "Redis maxmemory-policy is {policy}: under memory pressure Redis may evict this stream \
             with its consumer group and pending entries; use noeviction for streams you cannot lose");
    }
    let mut cursor = Some("0".to_owned()); // Some: still replaying our own pending entries.
    let mut reading = None;
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        // Paused: read nothing new; what was read finishes.
        if ctx.paused.is_paused() && !ctx.paused.wait_running(&shutdown).await {
            break;
        }
        let count = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = intake.read_ahead().room(ctx.config.batch) => n,
        };
        let id = cursor.as_deref().unwrap_or(">");
        let block = cursor.is_none().then_some(ctx.config.block_ms);
        let read = read_batch(
            &ctx,
            &key,
            &mut reading,
            (&redis, &mut commands),
            read_timeout,
            (id, count, block),
        );
        let result = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = read => r,
        };
        let mut entries = match result {
            Ok(entries) => {
                ctx.redis_health.succeeded();
                entries
            }
            Err(e) if e.is_nogroup() => {
                group.ensure(&mut commands, true, &shutdown).await;
                continue;
            }
            Err(e) => {
                ctx.metrics.redis_error("read");
                if e.is_redirect() {
                    // The slot moved (failover, migration): find its node again.
                    reading = None;
                }
                if e.is_unreachable() {
                    ctx.redis_health.failed("read", &e);
                } else {
                    tracing::warn!(plugin = %ctx.plugin.name, error = %e, "read failed; retrying");
                }
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        backoff.reset();
        if let Some(from) = &cursor {
            if entries.is_empty() {
                tracing::debug!(plugin = %ctx.plugin.name, "own pending entries replayed; reading new entries");
                cursor = None;
                ctx.inflight.set_replayed();
                continue;
            }
            let last = entries.last().map(|e| e.id.clone());
            if let Err(e) = fill_attempts(&ctx, &key, &mut commands, &mut entries).await {
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
        let deliveries = entries
            .into_iter()
            .map(|e| Delivery::new(key.clone(), e))
            .collect();
        if intake.submit(deliveries).await.is_err() {
            break;
        }
    }
}

/// Reads one batch, (re)connecting first when there is no usable connection
/// (on a cluster, to the node serving `key` now).
async fn read_batch(
    ctx: &PluginContext,
    key: &str,
    reading: &mut Option<WireConnection>,
    (redis, commands): (&Endpoint, &mut Conn),
    timeout: Duration,
    (id, count, block_ms): (&str, usize, Option<u64>),
) -> Result<Vec<Entry>, WireError> {
    let conn = match reading {
        Some(conn) if !conn.is_broken() => conn,
        _ => {
            let url = redis.node_url(commands, key.as_bytes()).await?;
            reading.insert(WireConnection::connect(&url, timeout).await?)
        }
    };
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(ctx.group())
        .arg(&ctx.consumer)
        .arg("COUNT")
        .arg(count);
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms);
    }
    cmd.arg("STREAMS").arg(key).arg(id);
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
    key: &str,
    conn: &mut Conn,
    entries: &mut [Entry],
) -> Result<(), redis::RedisError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    let reply: StreamPendingCountReply = redis::cmd("XPENDING")
        .arg(key)
        .arg(ctx.group())
        .arg(&first.id)
        .arg(&last.id)
        .arg(entries.len())
        .arg(&ctx.consumer)
        .query_async(conn)
        .await?;
    let counts: HashMap<String, u32> = reply
        .ids
        .into_iter()
        .map(|p| (p.id, u32::try_from(p.times_delivered).unwrap_or(u32::MAX)))
        .collect();
    for e in entries.iter_mut() {
        e.attempt = counts.get(&e.id).copied().unwrap_or(2).max(1);
    }
    Ok(())
}
