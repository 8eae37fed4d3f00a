//! The list source's side of the pipeline: carries out settle's verdicts on
//! the processing list (`LREM` in batches, the commit script, a requeue after
//! the backoff, the dead-letter script). Every delivery gets a host-assigned
//! token as its id; the item's stored bytes are kept here by token, because
//! equal items are distinct deliveries and removing "one copy" is exact.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connection::Conn;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;

use super::Keys;
use super::item::{self, Item};
use crate::backoff::Backoff;
use crate::effects::{self, Commit, CommitTarget, EffectBuffer};
use crate::pipeline::settle::CommitState;
use crate::pipeline::source::{DeadLetterRequest, Source};
use crate::pipeline::{Delivery, PluginContext, Receipt};
use crate::sources::letter;
use crate::streams::Entry;
use crate::streams::entry::RawField;

/// Attempts at an `LREM` batch before the items are left in the processing
/// list (moved back to the queue and handled again when this consumer
/// restarts or is presumed dead).
const ACK_TRIES: u32 = 8;

/// What the source keeps of a delivery it holds.
#[derive(Debug)]
struct HeldItem {
    /// The item as stored in the processing list.
    stored: Vec<u8>,
    /// Where the producer's bytes start in it.
    data_start: usize,
}

/// Handled items on their way to the acker: key, token, the item as stored.
type AckBatch = Vec<(Arc<str>, String, Vec<u8>)>;

/// One plugin's list source.
pub(crate) struct ListSource {
    ctx: Arc<PluginContext>,
    conn: Conn,
    keys: Arc<Keys>,
    next_token: AtomicU64,
    held: Mutex<HashMap<String, HeldItem>>,
    acks: UnboundedSender<AckBatch>,
    shutdown: CancellationToken,
}

/// The receiving end of the source's ack queue, for [`run_acker`].
pub(crate) struct AckQueue(UnboundedReceiver<AckBatch>);

impl ListSource {
    /// A source acting through `conn`; run its [`AckQueue`] with [`run_acker`].
    pub(crate) fn new(
        ctx: Arc<PluginContext>,
        conn: Conn,
        keys: Arc<Keys>,
        shutdown: CancellationToken,
    ) -> (ListSource, AckQueue) {
        let (acks, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            ListSource {
                ctx,
                conn,
                keys,
                next_token: AtomicU64::new(1),
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

    /// Turns items just moved into the processing list into deliveries
    /// (field `data`, the delivery count from the item's wrapper) and holds them.
    pub(crate) fn deliveries(&self, stored: Vec<Vec<u8>>) -> Vec<Delivery> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        stored
            .into_iter()
            .map(|stored| {
                let item = Item::parse(stored);
                let token = format!("l{}", self.next_token.fetch_add(1, Ordering::Relaxed));
                let data = item.data().to_vec();
                let data_start = item.stored.len() - data.len();
                let mut delivery = Delivery::new(
                    self.keys.queue.clone(),
                    Entry {
                        id: token.clone(),
                        fields: Some(vec![RawField {
                            name: b"data".to_vec(),
                            value: data,
                        }]),
                        attempt: item.deliveries.saturating_add(1),
                    },
                );
                delivery.uncounted.refused = item.refused;
                held.insert(
                    token,
                    HeldItem {
                        stored: item.stored,
                        data_start,
                    },
                );
                delivery
            })
            .collect()
    }

    fn take(&self, receipt: &Receipt) -> Option<HeldItem> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&receipt.id)
    }

    fn stored(&self, receipt: &Receipt) -> Option<Vec<u8>> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&receipt.id)
            .map(|h| h.stored.clone())
    }

    fn release(&self, receipt: &Receipt) {
        self.take(receipt);
        self.ctx
            .inflight
            .release(&receipt.key, [receipt.id.as_str()]);
    }
}

impl Source for ListSource {
    fn ack(&self, done: Vec<Receipt>) {
        let items: Vec<_> = done
            .iter()
            .filter_map(|r| {
                self.take(r)
                    .map(|h| (r.key.clone(), r.id.clone(), h.stored))
            })
            .collect();
        if self.acks.send(items).is_err() {
            tracing::error!(plugin = %self.ctx.plugin.name, "list acker stopped early; handled items stay in the processing list and are handled again after a restart");
        }
    }

    async fn commit(&self, receipt: &Receipt, effects: &EffectBuffer) -> CommitState {
        let Some(stored) = self.stored(receipt) else {
            return CommitState::NotOwner;
        };
        let target = CommitTarget {
            key: &self.keys.processing,
            held: effects::Held::List { item: &stored },
        };
        let mut conn = self.conn.clone();
        // The token alone is not unique across hosts and restarts: scheduled
        // members are named after it, so add the consumer.
        let id = format!("{}/{}", self.ctx.consumer, receipt.id);
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
        let refused = receipt.uncounted.refused + u32::from(!attempt_used);
        let wrapped = item::wrap(&held.stored[held.data_start..], receipt.deliveries, refused);
        let (ctx, keys, mut conn) = (self.ctx.clone(), self.keys.clone(), self.conn.clone());
        let shutdown = self.shutdown.clone();
        let due = tokio::time::Instant::now() + delay;
        ctx.retries.add(&receipt, std::time::Instant::now() + delay);
        // The item waits in the processing list: a crash meanwhile moves it
        // back with the recovery, nothing is lost.
        tokio::spawn(async move {
            let mut backoff = Backoff::new();
            let waited = tokio::select! {
                _ = shutdown.cancelled() => false,
                _ = tokio::time::sleep_until(due) => true,
            };
            if waited {
                loop {
                    let moved: Result<i64, _> = super::REQUEUE
                        .key(&keys.processing)
                        .key(&*keys.queue)
                        .arg(&held.stored)
                        .arg(&wrapped)
                        .invoke_async(&mut conn)
                        .await;
                    match moved {
                        Ok(_) => break,
                        Err(e) => {
                            ctx.redis_health.failed("list requeue", &e);
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
        let Some(stored) = self.stored(&request.receipt) else {
            return;
        };
        let fields = letter::fields(&self.ctx, &request);
        let mut invocation = super::DEAD_LETTER.prepare_invoke();
        invocation
            .key(&self.keys.processing)
            .key(&self.ctx.dlq_stream)
            .arg(&stored);
        for f in &fields {
            invocation.arg(f.as_slice());
        }
        let scripted = letter::ScriptedLetter {
            invocation,
            what: "list item",
            // Moved back and settled again after a restart.
            left: "the item stays in the processing list until it is moved back",
        };
        letter::write_scripted(&self.ctx, &request, &self.conn, &self.shutdown, scripted).await;
        self.release(&request.receipt);
    }

    fn forget(&self, receipt: &Receipt) {
        self.release(receipt);
    }
}

/// Removes acked items from the processing list (one copy each, pipelined)
/// until every sender is gone.
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
        // From the tail (`-1`): items enter the processing list at its head,
        // so the handled ones are the oldest, near the tail, and a scan from
        // there finds them at once. Which copy of equal items goes does not
        // matter: they are interchangeable.
        let mut pipe = redis::pipe();
        for (_, _, stored) in &batch {
            pipe.cmd("LREM")
                .arg(&keys.processing)
                .arg(-1)
                .arg(stored)
                .ignore();
        }
        let mut backoff = Backoff::new();
        for tried in 1..=ACK_TRIES {
            match pipe.query_async::<()>(&mut conn).await {
                Ok(()) => {
                    ctx.redis_health.succeeded();
                    ctx.metrics.acked.inc_by(batch.len() as u64);
                    break;
                }
                Err(e) => {
                    ctx.redis_health.failed("list ack", &e);
                    if tried == ACK_TRIES {
                        tracing::warn!(plugin = %ctx.plugin.name, items = batch.len(), error = %e,
                            "cannot remove handled items from the processing list; they are handled again after a restart");
                    } else {
                        backoff.sleep().await;
                    }
                }
            }
        }
        for (key, token, _) in &batch {
            ctx.inflight.release(key, [token.as_str()]);
        }
    }
}
