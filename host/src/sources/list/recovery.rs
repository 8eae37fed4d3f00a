//! Live and dead consumers of a list queue: each consumer refreshes a
//! heartbeat key with a TTL of `claim.min_idle_ms` and registers in the
//! plugin's consumer set; every `claim.interval_ms` each live host moves the
//! processing list of any registered consumer whose heartbeat expired back to
//! the queue (one script per step, which checks the heartbeat itself, so a
//! consumer that comes back meanwhile keeps its list). At start a consumer
//! moves its own processing list back: what it holds there is from a
//! previous run (a crash, or a stop with retries still waiting).

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use tokio_util::sync::CancellationToken;

use super::{Keys, item};
use crate::pipeline::PluginContext;

/// Items moved per script call, so one call never holds Redis for long.
const PER_CALL: u32 = 500;

/// Moves a processing list back to the queue; `own` skips the heartbeat
/// check. Returns the items moved, or `None` when the consumer is alive.
pub(crate) async fn recover(
    conn: &mut Conn,
    queue: &str,
    processing: &str,
    alive: &str,
    consumers: &str,
    consumer: &str,
    own: bool,
) -> Result<Option<u64>, redis::RedisError> {
    let mut total = 0u64;
    loop {
        let moved: i64 = super::RECOVER
            .key(processing)
            .key(queue)
            .key(alive)
            .key(consumers)
            .arg(PER_CALL)
            .arg(if own { "own" } else { "dead" })
            .arg(consumer)
            .arg(item::MAGIC)
            .invoke_async(conn)
            .await?;
        if moved < 0 {
            return Ok(None);
        }
        total += moved as u64;
        if (moved as u64) < u64::from(PER_CALL) {
            return Ok(Some(total));
        }
    }
}

/// Registers this consumer and moves its previous run's processing list back.
pub(crate) async fn start(
    ctx: &PluginContext,
    keys: &Keys,
    conn: &mut Conn,
) -> Result<(), redis::RedisError> {
    beat(ctx, keys, conn).await?;
    let moved = recover(
        conn,
        &keys.queue,
        &keys.processing,
        &keys.alive,
        &keys.consumers,
        &ctx.consumer,
        true,
    )
    .await?
    .unwrap_or(0);
    if moved > 0 {
        tracing::info!(plugin = %ctx.plugin.name, list = %keys.queue, moved, "moved this consumer's previous processing list back to the queue");
    }
    Ok(())
}

async fn beat(ctx: &PluginContext, keys: &Keys, conn: &mut Conn) -> Result<(), redis::RedisError> {
    let ttl = ctx.config.claim.min_idle_ms.max(1);
    redis::pipe()
        .cmd("SET")
        .arg(&keys.alive)
        .arg(1)
        .arg("PX")
        .arg(ttl)
        .ignore()
        .cmd("SADD")
        .arg(&keys.consumers)
        .arg(&ctx.consumer)
        .ignore()
        .query_async::<()>(conn)
        .await
}

/// Heartbeats and recovers dead consumers' lists until shutdown; then
/// removes this consumer's heartbeat (its processing list stays, for the
/// next start or another host, if it still holds anything).
pub(crate) async fn run(
    ctx: Arc<PluginContext>,
    keys: Arc<Keys>,
    mut conn: Conn,
    shutdown: CancellationToken,
) {
    let ttl = Duration::from_millis(ctx.config.claim.min_idle_ms.max(3));
    let beat_every = ttl / 3;
    let scan_every = Duration::from_millis(ctx.config.claim.interval_ms);
    let mut next_scan = tokio::time::Instant::now();
    loop {
        match beat(&ctx, &keys, &mut conn).await {
            Ok(()) => ctx.redis_health.succeeded(),
            Err(e) => ctx.redis_health.failed("list heartbeat", &e),
        }
        if tokio::time::Instant::now() >= next_scan {
            next_scan = tokio::time::Instant::now() + scan_every;
            if let Err(e) = scan(&ctx, &keys, &mut conn).await {
                ctx.redis_health.failed("list recovery", &e);
            }
        }
        let wait = beat_every.min(next_scan.saturating_duration_since(tokio::time::Instant::now()));
        if !crate::shutdown::pause(wait.max(Duration::from_millis(10)), &shutdown).await {
            break;
        }
    }
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(&keys.alive)
        .query_async(&mut conn)
        .await;
}

/// One look at every registered consumer but this one.
async fn scan(ctx: &PluginContext, keys: &Keys, conn: &mut Conn) -> Result<(), redis::RedisError> {
    let consumers: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&keys.consumers)
        .query_async(conn)
        .await?;
    for consumer in consumers.iter().filter(|c| **c != ctx.consumer) {
        let processing = super::processing_key(&keys.queue, &ctx.plugin.name, consumer);
        let alive = super::alive_key(&keys.queue, &ctx.plugin.name, consumer);
        if let Some(moved) = recover(
            conn,
            &keys.queue,
            &processing,
            &alive,
            &keys.consumers,
            consumer,
            false,
        )
        .await?
            && moved > 0
        {
            ctx.metrics.claimed.inc_by(moved);
            tracing::warn!(plugin = %ctx.plugin.name, list = %keys.queue, consumer, moved,
                "consumer presumed dead (heartbeat expired): moved its processing list back to the queue");
        }
    }
    Ok(())
}
