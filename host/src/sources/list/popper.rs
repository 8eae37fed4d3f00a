//! The popper: moves items from the queue into this consumer's processing
//! list and hands them to intake. Non-blocking batches (`LMOVE` in a script)
//! while the queue has items, as many as the read-ahead budget allows; a
//! `BLMOVE` with `block_ms` on a connection of its own when it is empty (a
//! blocking command would stall everything queued behind it).

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use tokio_util::sync::CancellationToken;

use super::ListSource;
use crate::backoff::Backoff;
use crate::pipeline::PluginContext;
use crate::pipeline::intake::Intake;
use crate::sources::stream::reader::READ_TIMEOUT_MARGIN;

/// Pops until shutdown, or until the work queue is closed.
pub(crate) async fn run(
    ctx: Arc<PluginContext>,
    source: Arc<ListSource>,
    redis: crate::connection::Endpoint,
    mut commands: Conn,
    intake: Intake<ListSource>,
    shutdown: CancellationToken,
) {
    let keys = source.keys().clone();
    let timeout = Duration::from_millis(ctx.config.block_ms) + READ_TIMEOUT_MARGIN;
    // On a cluster, the node serving the queue; found again after an error.
    let mut blocking: Option<Conn> = None;
    let block_secs = ctx.config.block_ms as f64 / 1000.0;
    let mut backoff = Backoff::new();
    while !shutdown.is_cancelled() {
        if ctx.paused.is_paused() && !ctx.paused.wait_running(&shutdown).await {
            break;
        }
        let count = tokio::select! {
            _ = shutdown.cancelled() => break,
            n = intake.read_ahead().room(ctx.config.batch) => n,
        };
        let mut pop = super::POP.prepare_invoke();
        pop.key(&*keys.queue).key(&keys.processing).arg(count);
        let popped: Result<Vec<Vec<u8>>, redis::RedisError> = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = pop.invoke_async(&mut commands) => r,
        };
        let items = match popped {
            Ok(items) if items.is_empty() => {
                // Empty: block on the popper's own connection. Shutdown does
                // not wait for it; an item it moves meanwhile stays in the
                // processing list and is moved back at the next start.
                let mut blmove = redis::cmd("BLMOVE");
                blmove
                    .arg(&*keys.queue)
                    .arg(&keys.processing)
                    .arg("RIGHT")
                    .arg("LEFT")
                    .arg(block_secs);
                let conn = match &mut blocking {
                    Some(conn) => conn,
                    None => {
                        let connected = redis
                            .connect_node(&mut commands, keys.queue.as_bytes(), timeout, &shutdown)
                            .await;
                        match connected {
                            Ok(Some(conn)) => blocking.insert(conn),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::error!(plugin = %ctx.plugin.name, error = %e, "list popper cannot connect; nothing is popped");
                                return;
                            }
                        }
                    }
                };
                let blocked: Result<Option<Vec<u8>>, redis::RedisError> = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    r = blmove.query_async(conn) => r,
                };
                blocked.map(|item| item.into_iter().collect())
            }
            other => other,
        };
        match items {
            Ok(items) => {
                ctx.redis_health.succeeded();
                backoff.reset();
                if items.is_empty() {
                    continue;
                }
                let deliveries = source.deliveries(items);
                if intake.submit(deliveries).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                if redis.is_cluster() {
                    blocking = None;
                }
                if e.code() == Some("WRONGTYPE") {
                    tracing::error!(plugin = %ctx.plugin.name, list = %keys.queue, error = %e,
                        "the queue key does not hold a list; nothing is popped until it does");
                } else {
                    ctx.redis_health.failed("list pop", &e);
                }
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}
