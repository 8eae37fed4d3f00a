//! The keeper: every `claim.interval_ms` returns in-flight members whose
//! visibility deadline (`claim.min_idle_ms` after their pop) passed — their
//! host died or stalled — to the queue, and pushes out the deadlines of the
//! members this host still holds (queued, being handled), so a busy live
//! host does not lose them to the expiry.

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use tokio_util::sync::CancellationToken;

use super::SortedSetSource;
use crate::pipeline::PluginContext;

/// Members moved or extended per script call.
const PER_CALL: usize = 500;

/// Runs until shutdown.
pub(crate) async fn run(
    ctx: Arc<PluginContext>,
    source: Arc<SortedSetSource>,
    mut conn: Conn,
    shutdown: CancellationToken,
) {
    let keys = source.keys().clone();
    let every = Duration::from_millis(ctx.config.claim.interval_ms).min(
        Duration::from_millis(ctx.config.claim.min_idle_ms / 3).max(Duration::from_millis(10)),
    );
    // Hold a weak view only: the workers' drop of the source ends the settlers.
    let source = Arc::downgrade(&source);
    while crate::shutdown::pause(every, &shutdown).await {
        let Some(held) = source.upgrade().map(|s| s.held()) else {
            return;
        };
        for chunk in held.chunks(PER_CALL) {
            let mut extend = super::SETTLE.prepare_invoke();
            extend
                .key(&*keys.queue)
                .key(&keys.inflight)
                .key(&keys.meta)
                .arg("extend")
                .arg(ctx.config.claim.min_idle_ms);
            for h in chunk {
                extend.arg(&h.member).arg(&h.token);
            }
            if let Err(e) = extend.invoke_async::<i64>(&mut conn).await {
                ctx.redis_health.failed("sorted-set keep-alive", &e);
            }
        }
        loop {
            let moved: Result<usize, _> = super::EXPIRE
                .key(&*keys.queue)
                .key(&keys.inflight)
                .key(&keys.meta)
                .arg(PER_CALL)
                .invoke_async(&mut conn)
                .await;
            match moved {
                Ok(0) => break,
                Ok(n) => {
                    ctx.metrics.claimed.inc_by(n as u64);
                    tracing::warn!(plugin = %ctx.plugin.name, sorted_set = %keys.queue, moved = n,
                        "in-flight members passed their visibility deadline (a host died or stalled): back in the queue");
                    if n < PER_CALL {
                        break;
                    }
                }
                Err(e) => {
                    ctx.redis_health.failed("sorted-set expiry", &e);
                    break;
                }
            }
        }
    }
}
