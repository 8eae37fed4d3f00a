//! A worker: owns one plugin instance and hands it deliveries one by one.
//! It asks [`settle`] what each result means and has the source carry that
//! out; it never decides an entry's fate itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::Conn;

use super::accounting;
use super::canary::{self, Instances};
use super::intake::ReadAhead;
use super::settle::{self, Facts, Handled, Verdict};
use super::source::{DeadLetterRequest, Source};
use super::tally::Tally;
use super::{Batch, Delivery, Origin, PluginContext, Receipt, delivery};
use crate::config::{Isolation, Metering, SourceKind};
use crate::plugin::{LoadedPlugin, Message, PluginInstance, Source as MessageSource, StreamEntry};
use crate::streams::entry::{self, RawField};

/// Longest a handled entry waits in a worker before its ack is sent.
const ACK_FLUSH: Duration = Duration::from_millis(5);

/// Handles batches until the work queue closes and is empty.
pub(crate) async fn run<S: Source>(
    ctx: Arc<PluginContext>,
    source: Arc<S>,
    read_ahead: Arc<ReadAhead>,
    work: async_channel::Receiver<Batch>,
    conn: Conn,
) {
    let mut instances = Instances::default();
    let mut scratch = Scratch::default();
    let mut tally = Tally::new(&ctx);
    // The running version, re-read only when a swap replaced it.
    let mut current = arc_swap::Cache::new(&ctx.current);
    while let Ok(batch) = work.recv().await {
        // Busy while it holds a batch: a gauge update per batch, not per call.
        ctx.metrics.workers_busy.inc();
        let mut done = Done {
            acked: Vec::with_capacity(batch.len()),
            bytes: 0,
            flushed: Instant::now(),
        };
        for delivery in batch {
            // Beside other plugins with work, wait for this plugin's share
            // of the CPU; entries handled so far are acked first.
            if let Some(share) = &ctx.cpu_share {
                let waited = share
                    .wait_turn(|| {
                        done.flush(&ctx, &*source, &read_ahead, &mut tally);
                        ctx.metrics.workers_busy.dec();
                    })
                    .await;
                if !waited.is_zero() {
                    ctx.metrics.workers_busy.inc();
                    ctx.metrics
                        .release
                        .cpu_throttled
                        .inc_by(waited.as_secs_f64());
                }
            }
            done.bytes += delivery.bytes();
            let running = current.load();
            let handled = handle(
                &ctx,
                &*source,
                (&mut instances, running),
                delivery,
                (&mut scratch, &mut tally),
                &conn,
            );
            let (receipt, ended) = handled.await;
            scratch.msg.fields.clear();
            done.acked.extend(receipt);
            // Slow entries must not hold back the acks of fast ones: an entry
            // left pending long enough is claimed and handled again
            // elsewhere. Paced by when the last call returned, which costs
            // no clock read of its own.
            let now = ended.unwrap_or_else(Instant::now);
            if now.saturating_duration_since(done.flushed) >= ACK_FLUSH {
                done.flush(&ctx, &*source, &read_ahead, &mut tally);
            }
        }
        done.flush(&ctx, &*source, &read_ahead, &mut tally);
        ctx.metrics.workers_busy.dec();
    }
}

/// What a worker handled since its last flush.
struct Done {
    /// Receipts to ack.
    acked: Vec<Receipt>,
    /// Read-ahead bytes of the entries handled.
    bytes: usize,
    flushed: Instant,
}

impl Done {
    /// Adds the tally to the shared metrics, hands the acks to the source,
    /// and returns the entries' bytes to the read-ahead budget.
    fn flush<S: Source>(
        &mut self,
        ctx: &PluginContext,
        source: &S,
        read_ahead: &ReadAhead,
        tally: &mut Tally,
    ) {
        // Counted before the acks go out: whoever sees an entry acked in
        // Redis sees it in the metrics too.
        tally.flush(ctx);
        if !self.acked.is_empty() {
            source.ack(std::mem::take(&mut self.acked));
        }
        if self.bytes > 0 {
            read_ahead.give_back(std::mem::take(&mut self.bytes));
        }
        self.flushed = Instant::now();
    }
}

/// A worker's message and original key, reused from entry to entry so a
/// stream entry costs no string allocation of its own (BENCHMARKS.md,
/// issue 17).
struct Scratch {
    /// The message handed to the handler.
    msg: Message,
    /// The key the entry was first read from, for its dead letter.
    stream: String,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            msg: Message {
                source: MessageSource::Stream(StreamEntry {
                    name: String::new(),
                    id: String::new(),
                }),
                id: String::new(),
                fields: Vec::new(),
                attempt: 0,
            },
            stream: String::new(),
        }
    }
}

/// Handles one delivery on `current` (or the canary's candidate); returns
/// its receipt when it is to be acked, and when the last handler call
/// returned (`None`: no call ran).
async fn handle<S: Source>(
    ctx: &PluginContext,
    source: &S,
    (instances, current): (&mut Instances, &Arc<LoadedPlugin>),
    delivery: Delivery,
    (scratch, tally): (&mut Scratch, &mut Tally),
    conn: &Conn,
) -> (Option<Receipt>, Option<Instant>) {
    tally.received();
    let mut ended = None;
    let attempt = delivery.attempt();
    let Delivery {
        key,
        entry,
        uncounted,
        origin,
    } = delivery;
    let original = delivery::original_ref(
        (&ctx.redeliver_stream, ctx.stream()),
        &key,
        entry.fields.unwrap_or_default(),
        origin,
    );
    // Entries with non-UTF-8 names are dead-lettered before handling
    // (settle::before_handling); were one to get here, its names are shown
    // escaped rather than changed silently.
    let fields = entry::to_wit_fields(original.fields).unwrap_or_else(|(raw, _)| {
        raw.into_iter()
            .map(|f| crate::plugin::Field {
                name: crate::display::escape_bytes(&f.name),
                value: f.value,
            })
            .collect()
    });
    let original_id = original.id;
    // A replayed entry reaches the handler with its original source, and
    // with its id in the redelivery stream. The message's strings are the
    // worker's, reused from entry to entry; the receipt keeps the id.
    scratch.stream.clear();
    scratch.stream.push_str(&original.stream);
    set_source(
        &mut scratch.msg.source,
        ctx,
        &scratch.stream,
        original_id.as_deref(),
        &entry.id,
        &original.origin,
    );
    let origin = original.origin;
    scratch.msg.id.clear();
    scratch.msg.id.push_str(&entry.id);
    scratch.msg.fields = fields;
    scratch.msg.attempt = attempt;
    let receipt = Receipt {
        key,
        id: entry.id,
        deliveries: entry.attempt,
        uncounted,
    };
    let msg = &scratch.msg;
    // The version is pinned for the whole delivery, re-runs after a state
    // conflict included; a hot swap takes effect at the next entry. A
    // canary takes its share here.
    let id = original_id.as_deref().unwrap_or(&msg.id);
    let key = canary::routing_key(&ctx.config, id, &msg.fields);
    let candidate = ctx.canary.route(current, key);
    let running = candidate.as_ref().unwrap_or(current);
    let instance = instances.for_version(&running.digest);
    let mut conflicts = 0u32;
    loop {
        let inst = match instance {
            Some(inst) => Ok(inst),
            None => match running.instantiate().await {
                Ok(mut inst) => {
                    inst.attach_redis(conn.clone());
                    Ok(instance.insert(inst))
                }
                Err(e) => Err(e.to_string()),
            },
        };
        let (handled, read_failed, has_effects) = match inst {
            Ok(inst) => match inst.invoke(msg, &ctx.plugin.limits).await {
                Ok(invocation) => {
                    ended = Some(invocation.ended);
                    let metered = ctx.plugin.limits.metering == Metering::Fuel;
                    tally.invoked(
                        invocation.elapsed.as_secs_f64(),
                        metered.then_some(invocation.fuel),
                    );
                    accounting::charge(ctx, &msg.fields, &invocation, tally);
                    let effects = inst.effects();
                    if conflicts == 0 {
                        ctx.shadow
                            .offer(msg, &invocation.outcome, effects.effects());
                    }
                    (
                        Handled::Ran(invocation.outcome),
                        effects.read_failed(),
                        !effects.is_empty(),
                    )
                }
                Err(poisoned) => {
                    // Never reached (spent instances are dropped below); a
                    // fresh instance takes its place rather than an outcome
                    // being made up.
                    tracing::error!(error = %poisoned, "discarding the instance");
                    *instance = None;
                    continue;
                }
            },
            Err(error) => (Handled::NoInstance(error), false, false),
        };
        let facts = Facts {
            handled: &handled,
            read_failed,
            has_effects,
            commit: None,
            conflicts,
            attempt,
            refused: receipt.uncounted.refused,
        };
        let mut verdict = settle::decide(&facts, &ctx.config.retry);
        if verdict == Verdict::Commit
            && let Some(inst) = instance.as_ref()
        {
            let state = source.commit(&receipt, inst.effects()).await;
            verdict = settle::decide(
                &Facts {
                    commit: Some(&state),
                    ..facts
                },
                &ctx.config.retry,
            );
        }
        drop_if_spent(ctx, instance);
        settle::record(ctx, &receipt, &verdict, &running.digest, tally);
        if !matches!(verdict, Verdict::Ack) {
            // Settled in Redis already (committed) or about to be
            // (dead-lettered, retried), and rare: counted now, so whoever
            // sees it in Redis sees it in the metrics too.
            tally.flush(ctx);
        }
        match verdict {
            Verdict::Ack => return (Some(receipt), ended),
            // `Commit` comes back from `decide` only before a commit was tried.
            Verdict::Rerun | Verdict::Commit => {
                conflicts += 1;
                // Jittered, growing pause so contending workers interleave.
                let pause_us = rand::random_range(0..(100u64 << conflicts.min(7)));
                tokio::time::sleep(Duration::from_micros(pause_us)).await;
            }
            Verdict::Committed | Verdict::LeaveToOwner => {
                source.forget(&receipt);
                return (None, ended);
            }
            Verdict::Retry { delay, failure, .. } => {
                source.retry(receipt, delay, failure.is_some());
                return (None, ended);
            }
            Verdict::DeadLetter { reason, error, .. } => {
                let request = DeadLetterRequest {
                    attempts: receipt.attempt(),
                    receipt,
                    original: delivery::Original {
                        stream: scratch.stream.clone(),
                        id: original_id,
                        origin,
                        fields: std::mem::take(&mut scratch.msg.fields)
                            .into_iter()
                            .map(|f| RawField {
                                name: f.name.into_bytes(),
                                value: f.value,
                            })
                            .collect(),
                    },
                    reason,
                    error,
                    digest: running.digest.to_string(),
                };
                source.dead_letter(request).await;
                return (None, ended);
            }
        }
    }
}

/// Sets `slot` to where this message came from, reusing its strings when
/// it already holds a stream entry (every entry of a stream plugin).
fn set_source(
    slot: &mut MessageSource,
    ctx: &PluginContext,
    key: &str,
    original_id: Option<&str>,
    id: &str,
    origin: &Origin,
) {
    if let (SourceKind::Stream(_), MessageSource::Stream(entry)) = (ctx.config.source(), &mut *slot)
    {
        entry.name.clear();
        entry.name.push_str(key);
        entry.id.clear();
        entry.id.push_str(original_id.unwrap_or(id));
        return;
    }
    *slot = delivery::message_source(ctx.config.source(), key, original_id, id, origin);
}

/// Drops an instance that trapped, every instance under `per-message`
/// isolation, and one whose memory passed `limits.recycle_memory_percent`
/// (the next entry gets a fresh one instead of a memory trap).
fn drop_if_spent(ctx: &PluginContext, instance: &mut Option<PluginInstance>) {
    let Some(inst) = instance.as_ref() else {
        return;
    };
    if inst.is_poisoned() || ctx.config.isolation == Isolation::PerMessage {
        *instance = None;
    } else if nearly_full(inst.memory_used(), &ctx.plugin.limits) {
        ctx.metrics.instances_recycled.inc();
        if !ctx
            .recycled
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            let limits = &ctx.plugin.limits;
            tracing::warn!(
                plugin = %ctx.plugin.name,
                memory_mib = inst.memory_used() >> 20,
                limit_mib = limits.memory_mib,
                recycle_memory_percent = limits.recycle_memory_percent,
                "instance replaced: its memory passed limits.recycle_memory_percent of limits.memory_mib; \
                 a guest whose memory keeps growing, or a memory_mib set too tight, is replaced like this \
                 each time (logged once; streamhost_instances_recycled_total counts them)"
            );
        }
        *instance = None;
    }
}

/// Whether `used` bytes passed the recycling share of the memory budget.
fn nearly_full(used: usize, limits: &crate::config::LimitsConfig) -> bool {
    let percent = u128::from(limits.recycle_memory_percent);
    percent < 100 && (used as u128) * 100 > u128::from(limits.memory_mib) * (1 << 20) * percent
}

#[cfg(test)]
mod tests {
    use super::nearly_full;
    use crate::config::LimitsConfig;

    #[test]
    fn an_instance_is_recycled_past_its_share_of_the_memory_budget_only() {
        let limits = LimitsConfig {
            memory_mib: 10,
            recycle_memory_percent: 90,
            ..LimitsConfig::default()
        };
        let mib = 1usize << 20;
        assert!(!nearly_full(9 * mib, &limits));
        assert!(nearly_full(9 * mib + 1, &limits));
        let never = LimitsConfig {
            recycle_memory_percent: 100,
            ..limits
        };
        assert!(!nearly_full(10 * mib, &never));
    }
}
