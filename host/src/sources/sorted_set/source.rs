//! The sorted-set source's side of the pipeline: carries out settle's
//! verdicts on the in-flight set (acks in batches, the commit script, a
//! requeue after the backoff, the dead-letter script). Deliveries get a
//! host-assigned id; the member and its delivery token are kept here by id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connection::Conn;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;

use super::Keys;
use crate::backoff::Backoff;
use crate::effects::{self, Commit, CommitTarget, EffectBuffer};
use crate::pipeline::settle::CommitState;
use crate::pipeline::source::{DeadLetterRequest, Source};
use crate::pipeline::{Delivery, Origin, PluginContext, Receipt};
use crate::sources::letter;
use crate::streams::Entry;
use crate::streams::entry::RawField;

/// Attempts at an ack batch before the members are left in flight (they
/// expire and are handled again).
const ACK_TRIES: u32 = 8;

/// A member this host holds and the token of its delivery.
#[derive(Debug, Clone)]
pub(crate) struct HeldMember {
    pub(crate) member: Vec<u8>,
    pub(crate) token: String,
}

type AckBatch = Vec<(Arc<str>, String, HeldMember)>;

/// One plugin's sorted-set source.
pub(crate) struct SortedSetSource {
    ctx: Arc<PluginContext>,
    conn: Conn,
    keys: Arc<Keys>,
    next_id: AtomicU64,
    held: Mutex<HashMap<String, HeldMember>>,
    acks: UnboundedSender<AckBatch>,
    shutdown: CancellationToken,
}

/// The receiving end of the source's ack queue, for [`run_acker`].
pub(crate) struct AckQueue(UnboundedReceiver<AckBatch>);

impl SortedSetSource {
    /// A source acting through `conn`; run its [`AckQueue`] with [`run_acker`].
    pub(crate) fn new(
        ctx: Arc<PluginContext>,
        conn: Conn,
        keys: Arc<Keys>,
        shutdown: CancellationToken,
    ) -> (SortedSetSource, AckQueue) {
        let (acks, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            SortedSetSource {
                ctx,
                conn,
                keys,
                next_id: AtomicU64::new(1),
                held: Mutex::default(),
                acks,
                shutdown,
            },
            AckQueue(rx),
        )
    }

    /// The keys this source works on.
    pub(crate) fn keys(&self) -> &Arc<Keys> {
        &self.keys
    }

    /// Turns popped `(member, token)` pairs into deliveries (field `data`,
    /// the delivery count from the token) and holds them.
    pub(crate) fn deliveries(&self, popped: Vec<(Vec<u8>, String)>) -> Vec<Delivery> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        popped
            .into_iter()
            .map(|(member, token)| {
                let (deliveries, refused, score) = super::parse_token(&token);
                let score = score.to_owned();
                let id = format!("z{}", self.next_id.fetch_add(1, Ordering::Relaxed));
                let mut delivery = Delivery::new(
                    self.keys.queue.clone(),
                    Entry {
                        id: id.clone(),
                        fields: Some(vec![RawField {
                            name: b"data".to_vec(),
                            value: member.clone(),
                        }]),
                        attempt: deliveries.max(1),
                    },
                );
                delivery.uncounted.refused = refused;
                delivery.origin = Origin::Score(score);
                held.insert(id, HeldMember { member, token });
                delivery
            })
            .collect()
    }

    /// Members held now, for the keeper to push their deadlines out.
    pub(crate) fn held(&self) -> Vec<HeldMember> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn get(&self, receipt: &Receipt) -> Option<HeldMember> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&receipt.id)
            .cloned()
    }

    fn take(&self, receipt: &Receipt) -> Option<HeldMember> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&receipt.id)
    }

    fn release(&self, receipt: &Receipt) {
        self.take(receipt);
        self.ctx
            .inflight
            .release(&receipt.key, [receipt.id.as_str()]);
    }
}

impl Source for SortedSetSource {
    fn ack(&self, done: Vec<Receipt>) {
        let batch: AckBatch = done
            .iter()
            .filter_map(|r| self.take(r).map(|h| (r.key.clone(), r.id.clone(), h)))
            .collect();
        if self.acks.send(batch).is_err() {
            tracing::error!(plugin = %self.ctx.plugin.name, "sorted-set acker stopped early; handled members stay in flight and are handled again when they expire");
        }
    }

    async fn commit(&self, receipt: &Receipt, effects: &EffectBuffer) -> CommitState {
        let Some(held) = self.get(receipt) else {
            return CommitState::NotOwner;
        };
        let target = CommitTarget {
            key: &self.keys.inflight,
            held: effects::Held::SortedSet {
                meta: &self.keys.meta,
                token: &held.token,
                member: &held.member,
            },
        };
        let mut conn = self.conn.clone();
        let id = format!("{}/{}", self.ctx.consumer, held.token);
        match effects::commit(&mut conn, &target, &id, effects, &self.ctx.plugin.effects).await {
            Ok(Commit::Committed) => CommitState::Committed,
            Ok(Commit::NotOwner) => CommitState::NotOwner,
            Ok(Commit::Conflict) => CommitState::Conflict,
            Err(e) => {
                self.ctx.metrics.redis_error("commit");
                if crate::streams::is_transient(&e) {
                    CommitState::Unavailable(e.to_string())
                } else {
                    CommitState::Refused(e.to_string())
                }
            }
        }
    }

    fn retry(&self, receipt: Receipt, delay: Duration, attempt_used: bool) {
        let Some(held) = self.take(&receipt) else {
            return;
        };
        let (ctx, keys, mut conn) = (self.ctx.clone(), self.keys.clone(), self.conn.clone());
        let shutdown = self.shutdown.clone();
        let due = tokio::time::Instant::now() + delay;
        let visibility = ctx.config.claim.min_idle_ms;
        ctx.retries.add(&receipt, std::time::Instant::now() + delay);
        // Waits in flight, its deadline pushed past the delay so no keeper
        // takes it early; a crash meanwhile lets it expire back to the queue.
        tokio::spawn(async move {
            let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            let extended: Result<i64, _> = super::SETTLE
                .key(&*keys.queue)
                .key(&keys.inflight)
                .key(&keys.meta)
                .arg("extend")
                .arg(delay_ms.saturating_add(visibility))
                .arg(&held.member)
                .arg(&held.token)
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = extended {
                tracing::debug!(plugin = %ctx.plugin.name, error = %e, "cannot extend a retried member's deadline; it may expire back to the queue early");
            }
            let mut backoff = Backoff::new();
            let waited = tokio::select! {
                _ = shutdown.cancelled() => false,
                _ = tokio::time::sleep_until(due) => true,
            };
            if waited {
                loop {
                    let requeued: Result<i64, _> = super::SETTLE
                        .key(&*keys.queue)
                        .key(&keys.inflight)
                        .key(&keys.meta)
                        .arg("requeue")
                        .arg(&held.member)
                        .arg(&held.token)
                        .arg(u32::from(!attempt_used))
                        .invoke_async(&mut conn)
                        .await;
                    match requeued {
                        Ok(_) => break,
                        Err(e) => {
                            ctx.redis_health.failed("sorted-set requeue", &e);
                            if !backoff.wait(&shutdown).await {
                                break;
                            }
                        }
                    }
                }
            }
            ctx.retries.remove([&receipt]);
            ctx.inflight.release(&receipt.key, [receipt.id.as_str()]);
        });
    }

    async fn dead_letter(&self, request: DeadLetterRequest) {
        let Some(held) = self.get(&request.receipt) else {
            return;
        };
        // The score comes with the delivery's origin.
        let fields = letter::fields(&self.ctx, &request);
        let mut invocation = super::DEAD_LETTER.prepare_invoke();
        invocation
            .key(&self.keys.inflight)
            .key(&self.keys.meta)
            .key(&self.ctx.dlq_stream)
            .arg(&held.member)
            .arg(&held.token);
        for f in &fields {
            invocation.arg(f.as_slice());
        }
        let scripted = letter::ScriptedLetter {
            invocation,
            what: "sorted-set member",
            // It expires and is settled again.
            left: "the member stays in flight until its deadline returns it",
        };
        letter::write_scripted(&self.ctx, &request, &self.conn, &self.shutdown, scripted).await;
        self.release(&request.receipt);
    }

    fn forget(&self, receipt: &Receipt) {
        self.release(receipt);
    }
}

/// Acks handled members (one script per batch) until every sender is gone.
pub(crate) async fn run_acker(
    ctx: Arc<PluginContext>,
    keys: Arc<Keys>,
    mut queue: AckQueue,
    mut conn: Conn,
) {
    while let Some(mut batch) = queue.0.recv().await {
        while let Ok(more) = queue.0.try_recv() {
            batch.extend(more);
            if batch.len() >= 1024 {
                break;
            }
        }
        if batch.is_empty() {
            continue;
        }
        let mut invocation = super::SETTLE.prepare_invoke();
        invocation
            .key(&*keys.queue)
            .key(&keys.inflight)
            .key(&keys.meta)
            .arg("ack");
        for (_, _, held) in &batch {
            invocation.arg(&held.member).arg(&held.token);
        }
        let mut backoff = Backoff::new();
        for tried in 1..=ACK_TRIES {
            match invocation.invoke_async::<i64>(&mut conn).await {
                Ok(_) => {
                    ctx.redis_health.succeeded();
                    ctx.metrics.acked.inc_by(batch.len() as u64);
                    break;
                }
                Err(e) => {
                    ctx.redis_health.failed("sorted-set ack", &e);
                    if tried == ACK_TRIES {
                        tracing::warn!(plugin = %ctx.plugin.name, members = batch.len(), error = %e,
                            "cannot ack handled members; they expire back to the queue and are handled again");
                    } else {
                        backoff.sleep().await;
                    }
                }
            }
        }
        for (key, id, _) in &batch {
            ctx.inflight.release(key, [id.as_str()]);
        }
    }
}
