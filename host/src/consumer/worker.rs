//! A worker: owns one plugin instance, hands it entries one by one, and routes
//! each result (ack, retry later, dead-letter).

use std::sync::Arc;
use std::time::Instant;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc::UnboundedSender;

use super::retry::RetryRequest;
use super::{Batch, PluginContext};
use crate::config::Isolation;
use crate::dispatch::{Disposition, Outcome, decide};
use crate::dlq;
use crate::effects::{self, Commit, CommitTarget};
use crate::plugin::{Message, PluginInstance};
use crate::streams::Entry;

/// Longest a handled entry waits in a worker before its ack is sent.
const ACK_FLUSH: std::time::Duration = std::time::Duration::from_millis(5);

/// Handles batches until the work queue closes and is empty.
pub async fn run(
    ctx: Arc<PluginContext>,
    work: async_channel::Receiver<Batch>,
    acks: UnboundedSender<Vec<String>>,
    retries: UnboundedSender<RetryRequest>,
    mut conn: ConnectionManager,
) {
    let mut instance: Option<PluginInstance> = None;
    while let Ok(batch) = work.recv().await {
        let mut acked = Vec::with_capacity(batch.len());
        let mut flushed = Instant::now();
        for entry in batch {
            let id = entry.id.clone();
            // Slow entries must not hold back the acks of fast ones: an entry
            // left pending long enough is claimed and handled again elsewhere.
            if !acked.is_empty() && flushed.elapsed() >= ACK_FLUSH {
                let _ = acks.send(std::mem::take(&mut acked));
                flushed = Instant::now();
            }
            match handle(&ctx, &mut instance, entry, &mut conn).await {
                Routed::Ack => acked.push(id),
                Routed::Retry(request) => {
                    // A closed scheduler means shutdown: the entry stays pending.
                    let _ = retries.send(request);
                }
                // Dead-lettered, committed, or left to its new owner.
                Routed::Done => ctx.inflight.release([id.as_str()]),
            }
        }
        if !acked.is_empty() && acks.send(acked).is_err() {
            tracing::error!(plugin = %ctx.plugin.name, "acker stopped early; handled entries stay pending and will be redelivered");
        }
    }
}

enum Routed {
    Ack,
    Retry(RetryRequest),
    /// Dead-lettered (or left pending for redelivery when that failed).
    Done,
}

async fn handle(
    ctx: &PluginContext,
    instance: &mut Option<PluginInstance>,
    entry: Entry,
    conn: &mut ConnectionManager,
) -> Routed {
    let Some(fields) = entry.fields else {
        ctx.metrics.trimmed.inc();
        tracing::warn!(plugin = %ctx.plugin.name, id = %entry.id, "pending entry was deleted or trimmed before it was handled; acking it");
        return Routed::Ack;
    };
    ctx.metrics.received.inc();
    let msg = Message {
        stream: ctx.config.stream.clone(),
        id: entry.id,
        fields,
        attempt: entry.attempt,
    };
    // The version is pinned for the whole delivery, re-runs after a state
    // conflict included; a hot swap takes effect at the next entry.
    let running = ctx.running();
    if instance
        .as_ref()
        .is_some_and(|i| *i.digest() != running.digest)
    {
        *instance = None;
    }
    let mut conflicts = 0u32;
    loop {
        let inst = match instance {
            Some(inst) => inst,
            None => match running.instantiate().await {
                Ok(mut inst) => {
                    inst.attach_redis(conn.clone());
                    instance.insert(inst)
                }
                Err(e) => {
                    tracing::error!(plugin = %ctx.plugin.name, id = %msg.id, error = %e, "cannot instantiate; entry will be retried");
                    return retry_after(ctx, msg.id, msg.attempt, &Outcome::Retry(e.to_string()));
                }
            },
        };
        ctx.metrics.workers_busy.inc();
        let invocation = inst.invoke(&msg, &ctx.plugin.limits).await;
        ctx.metrics.workers_busy.dec();
        ctx.metrics
            .handler_seconds
            .observe(invocation.elapsed.as_secs_f64());
        ctx.metrics.fuel.observe(invocation.fuel as f64);
        record_failure(ctx, &msg, &invocation.outcome, &running.digest);
        let (read_failed, has_effects) = (inst.effects().read_failed(), !inst.effects().is_empty());
        let outcome = match invocation.outcome {
            // The handler may have acted on a guess about its state.
            Outcome::Ok if read_failed => {
                Outcome::Retry("a state read failed; effects not committed".into())
            }
            Outcome::Ok if has_effects => match commit_effects(ctx, conn, inst, &msg).await {
                Ok(Commit::Committed | Commit::NotOwner) => {
                    drop_if_spent(ctx, instance);
                    return Routed::Done;
                }
                Ok(Commit::Conflict) if conflicts < MAX_CONFLICT_RERUNS => {
                    drop_if_spent(ctx, instance);
                    conflicts += 1;
                    ctx.metrics.effect_conflicts.inc();
                    // Jittered, growing pause so contending workers interleave.
                    let pause_us = rand::random_range(0..(100u64 << conflicts.min(7)));
                    tokio::time::sleep(std::time::Duration::from_micros(pause_us)).await;
                    continue;
                }
                Ok(Commit::Conflict) => {
                    Outcome::Retry("state kept changing under the handler".into())
                }
                Err(error) => Outcome::Retry(error),
            },
            other => other,
        };
        drop_if_spent(ctx, instance);
        return route(ctx, &msg, &outcome, conn, &running.digest).await;
    }
}

/// Drops an instance that trapped, or every instance under `per-message` isolation.
fn drop_if_spent(ctx: &PluginContext, instance: &mut Option<PluginInstance>) {
    if instance.as_ref().is_some_and(PluginInstance::is_poisoned)
        || ctx.config.isolation == Isolation::PerMessage
    {
        *instance = None;
    }
}

/// Re-runs of a handler whose commit found its state changed, before the
/// entry is retried with backoff instead.
const MAX_CONFLICT_RERUNS: u32 = 16;

/// Commits the invocation's effects with the ack. Connection failures are
/// retried for a while; `Err` means nothing was written (the caller retries
/// the entry with backoff, so its next delivery starts clean).
async fn commit_effects(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    inst: &mut PluginInstance,
    msg: &Message,
) -> Result<Commit, String> {
    let target = CommitTarget {
        stream: ctx.stream(),
        group: ctx.group(),
        consumer: &ctx.consumer,
    };
    let mut delay = std::time::Duration::from_millis(50);
    for _ in 0..10 {
        match effects::commit(conn, &target, &msg.id, inst.effects(), &ctx.plugin.effects).await {
            Ok(Commit::Committed) => {
                ctx.metrics.acked.inc();
                ctx.metrics.observe_acked([msg.id.as_str()]);
                return Ok(Commit::Committed);
            }
            Ok(Commit::NotOwner) => {
                tracing::info!(plugin = %ctx.plugin.name, id = %msg.id, "entry was claimed by another consumer meanwhile; its effects were not committed");
                return Ok(Commit::NotOwner);
            }
            Ok(Commit::Conflict) => return Ok(Commit::Conflict),
            Err(e) if crate::streams::is_connection_error(&e) => {
                ctx.metrics.redis_error("commit");
                tracing::warn!(plugin = %ctx.plugin.name, id = %msg.id, error = %e, "commit failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            Err(e) => {
                tracing::error!(plugin = %ctx.plugin.name, id = %msg.id, error = %e, "commit refused; nothing written");
                return Err(format!("commit refused: {e}"));
            }
        }
    }
    Err("cannot reach Redis to commit; nothing written".into())
}

async fn route(
    ctx: &PluginContext,
    msg: &Message,
    outcome: &Outcome,
    conn: &mut ConnectionManager,
    digest: &str,
) -> Routed {
    match decide(outcome, msg.attempt, &ctx.config.retry) {
        Disposition::Ack => Routed::Ack,
        Disposition::RetryAfter(delay) => {
            ctx.metrics.retried.inc();
            Routed::Retry(RetryRequest {
                id: msg.id.clone(),
                due: Instant::now() + delay,
            })
        }
        Disposition::DeadLetter { reason, error } => {
            dlq::dead_letter(ctx, conn, msg, &reason, &error, digest).await;
            Routed::Done
        }
    }
}

fn retry_after(ctx: &PluginContext, id: String, attempt: u32, outcome: &Outcome) -> Routed {
    match decide(outcome, attempt, &ctx.config.retry) {
        Disposition::RetryAfter(delay) => Routed::Retry(RetryRequest {
            id,
            due: Instant::now() + delay,
        }),
        // Out of attempts but never handled: leave it pending for the claimer
        // rather than dead-letter an entry no handler has seen.
        _ => Routed::Retry(RetryRequest {
            id,
            due: Instant::now() + std::time::Duration::from_millis(ctx.config.retry.max_ms),
        }),
    }
}

fn record_failure(ctx: &PluginContext, msg: &Message, outcome: &Outcome, version: &str) {
    let (plugin, stream, version, id, attempt) = (
        &*ctx.plugin.name,
        ctx.stream(),
        version,
        &msg.id,
        msg.attempt,
    );
    match outcome {
        Outcome::Ok => {}
        Outcome::Retry(reason) => {
            ctx.metrics.retry.inc();
            tracing::info!(
                plugin,
                stream,
                version,
                id,
                attempt,
                reason,
                "handler asked for a retry"
            );
        }
        Outcome::Reject(reason) => {
            ctx.metrics.rejected.inc();
            tracing::info!(
                plugin,
                stream,
                version,
                id,
                attempt,
                reason,
                "handler rejected the entry"
            );
        }
        Outcome::Trap(kind, text) => {
            ctx.metrics.trap(*kind).inc();
            tracing::warn!(plugin, stream, version, id, attempt, kind = %kind, error = %text, "handler trapped; instance discarded");
        }
    }
}
