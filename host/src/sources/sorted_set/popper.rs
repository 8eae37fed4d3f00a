//! The popper: runs the pop script for as many members as the read-ahead
//! budget allows and hands them to intake. With nothing to hand out it
//! sleeps, never polling every few ms: in `due` order until the next
//! member's due time (Redis's clock, as the script reports it), capped at
//! `block_ms` so members added meanwhile with an earlier due time wait at
//! most that; on an empty set, a growing pause up to `block_ms`.

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use tokio_util::sync::CancellationToken;

use super::SortedSetSource;
use crate::backoff::Backoff;
use crate::config::SortedSetOrder;
use crate::pipeline::PluginContext;
use crate::pipeline::intake::Intake;

/// The first pause on an empty set; it doubles up to `block_ms`.
const FIRST_IDLE_PAUSE: Duration = Duration::from_millis(5);

/// What one run of the pop script said.
#[derive(Debug, Default, PartialEq)]
struct Popped {
    now_ms: f64,
    next_due: Option<f64>,
    members: Vec<(Vec<u8>, String)>,
}

fn parse(reply: Vec<redis::Value>) -> Result<Popped, redis::RedisError> {
    use redis::FromRedisValue;
    let mut values = reply.into_iter();
    let now_ms = values
        .next()
        .map(f64::from_redis_value)
        .transpose()?
        .unwrap_or(0.0);
    let next_due = match values.next() {
        Some(v) => {
            let text = String::from_redis_value(v)?;
            if text.is_empty() {
                None
            } else {
                text.parse().ok()
            }
        }
        None => None,
    };
    let mut members = Vec::new();
    while let (Some(m), Some(t)) = (values.next(), values.next()) {
        members.push((
            Vec::<u8>::from_redis_value(m)?,
            String::from_redis_value(t)?,
        ));
    }
    Ok(Popped {
        now_ms,
        next_due,
        members,
    })
}

/// Pops until shutdown, or until the work queue is closed.
pub(crate) async fn run(
    ctx: Arc<PluginContext>,
    source: Arc<SortedSetSource>,
    order: SortedSetOrder,
    mut commands: Conn,
    intake: Intake<SortedSetSource>,
    shutdown: CancellationToken,
) {
    let keys = source.keys().clone();
    let order_arg = match order {
        SortedSetOrder::Priority => "priority",
        SortedSetOrder::Due => "due",
    };
    let cap = Duration::from_millis(ctx.config.block_ms);
    let mut idle = FIRST_IDLE_PAUSE;
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
        pop.key(&*keys.queue)
            .key(&keys.inflight)
            .key(&keys.meta)
            .arg(count)
            .arg(order_arg)
            .arg(ctx.config.claim.min_idle_ms);
        let reply: Result<Vec<redis::Value>, redis::RedisError> = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = pop.invoke_async(&mut commands) => r,
        };
        match reply.and_then(parse) {
            Ok(popped) if popped.members.is_empty() => {
                ctx.redis_health.succeeded();
                backoff.reset();
                let pause = match popped.next_due {
                    // A member is due later: sleep until then (capped).
                    Some(due) if order == SortedSetOrder::Due => {
                        idle = FIRST_IDLE_PAUSE;
                        let wait_ms = (due - popped.now_ms).max(1.0);
                        Duration::from_millis(wait_ms as u64).min(cap)
                    }
                    _ => {
                        let pause = idle;
                        idle = (idle * 2).min(cap);
                        pause
                    }
                };
                if !crate::shutdown::pause(pause, &shutdown).await {
                    break;
                }
            }
            Ok(popped) => {
                ctx.redis_health.succeeded();
                backoff.reset();
                idle = FIRST_IDLE_PAUSE;
                let deliveries = source.deliveries(popped.members);
                if intake.submit(deliveries).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                if e.code() == Some("WRONGTYPE") {
                    tracing::error!(plugin = %ctx.plugin.name, sorted_set = %keys.queue, error = %e,
                        "the queue key does not hold a sorted set; nothing is popped until it does");
                } else {
                    ctx.redis_health.failed("sorted-set pop", &e);
                }
                if !backoff.wait(&shutdown).await {
                    break;
                }
            }
        }
    }
}
