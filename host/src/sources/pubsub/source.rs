//! The Pub/Sub source's side of the pipeline: nothing in Redis holds a
//! message, so an ack only lets go; a retry waits in memory and is handed
//! back to intake by the retrier; a dead letter is one `XADD` with the
//! channel and the pattern.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connection::Conn;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::effects::{self, Commit, CommitTarget, EffectBuffer};
use crate::pipeline::intake::Intake;
use crate::pipeline::settle::CommitState;
use crate::pipeline::source::{DeadLetterRequest, Source};
use crate::pipeline::{Delivery, Origin, PluginContext, Receipt};
use crate::sources::letter;
use crate::streams::Entry;
use crate::streams::entry::RawField;

/// Tries at a dead letter before it is given up (logged): Pub/Sub has
/// nowhere to leave it.
const DEAD_LETTER_TRIES: u32 = 6;

/// A message this host holds.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The channel, byte for byte.
    pub(crate) channel: Vec<u8>,
    /// The pattern that matched, for a `PSUBSCRIBE`.
    pub(crate) pattern: Option<Vec<u8>>,
    /// The payload, byte for byte.
    pub(crate) payload: Vec<u8>,
}

/// A delivery to hand to intake again when due.
type RetryRequest = (tokio::time::Instant, Delivery);

/// One plugin's Pub/Sub source.
pub(crate) struct PubSubSource {
    ctx: Arc<PluginContext>,
    conn: Conn,
    next_id: AtomicU64,
    held: Mutex<HashMap<String, Held>>,
    retries: UnboundedSender<RetryRequest>,
}

/// The receiving end of the source's retry queue, for [`run_retrier`].
pub(crate) struct RetryQueue(UnboundedReceiver<RetryRequest>);

impl PubSubSource {
    /// A source acting through `conn`; run its [`RetryQueue`] with [`run_retrier`].
    pub(crate) fn new(ctx: Arc<PluginContext>, conn: Conn) -> (PubSubSource, RetryQueue) {
        let (retries, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            PubSubSource {
                ctx,
                conn,
                next_id: AtomicU64::new(1),
                held: Mutex::default(),
                retries,
            },
            RetryQueue(rx),
        )
    }

    /// A first delivery of a message, held until settled.
    pub(crate) fn delivery(&self, message: Held) -> Delivery {
        let id = format!("p{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let delivery = Self::make(&id, &message, 1);
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, message);
        delivery
    }

    fn make(id: &str, message: &Held, attempt: u32) -> Delivery {
        let mut delivery = Delivery::new(
            Arc::from(String::from_utf8_lossy(&message.channel)),
            Entry {
                id: id.to_owned(),
                fields: Some(vec![RawField {
                    name: b"data".to_vec(),
                    value: message.payload.clone(),
                }]),
                attempt,
            },
        );
        delivery.origin = Origin::Channel {
            channel: message.channel.clone(),
            pattern: message.pattern.clone(),
        };
        delivery
    }

    fn get(&self, receipt: &Receipt) -> Option<Held> {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&receipt.id)
            .cloned()
    }

    fn release(&self, receipt: &Receipt) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&receipt.id);
        self.ctx
            .inflight
            .release(&receipt.key, [receipt.id.as_str()]);
    }
}

impl Source for PubSubSource {
    fn ack(&self, done: Vec<Receipt>) {
        for receipt in &done {
            self.release(receipt);
        }
        self.ctx.metrics.acked.inc_by(done.len() as u64);
    }

    async fn commit(&self, receipt: &Receipt, effects: &EffectBuffer) -> CommitState {
        let target = CommitTarget {
            key: &self.ctx.dlq_stream,
            held: effects::Held::Nowhere,
        };
        let mut conn = self.conn.clone();
        let id = format!("{}/pubsub/{}", self.ctx.consumer, receipt.id);
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
        let Some(message) = self.get(&receipt) else {
            return;
        };
        let mut delivery = Self::make(&receipt.id, &message, receipt.deliveries.saturating_add(1));
        delivery.uncounted = receipt.uncounted;
        if !attempt_used {
            delivery.uncounted.refused = delivery.uncounted.refused.saturating_add(1);
        }
        self.ctx
            .retries
            .add(&receipt, std::time::Instant::now() + delay);
        if self
            .retries
            .send((tokio::time::Instant::now() + delay, delivery))
            .is_err()
        {
            // Shutdown: a retry waiting in memory is gone (at-most-once).
            self.ctx.retries.remove([&receipt]);
            self.release(&receipt);
        }
    }

    async fn dead_letter(&self, request: DeadLetterRequest) {
        if self.get(&request.receipt).is_none() {
            return;
        }
        // The channel and pattern come with the delivery's origin.
        let fields = letter::fields(&self.ctx, &request);
        let mut backoff = Backoff::new();
        for tried in 1..=DEAD_LETTER_TRIES {
            let mut xadd = redis::cmd("XADD");
            xadd.arg(&self.ctx.dlq_stream).arg("*");
            for f in &fields {
                xadd.arg(f.as_slice());
            }
            let mut conn = self.conn.clone();
            match xadd.query_async::<String>(&mut conn).await {
                Ok(dlq_id) => {
                    letter::written(&self.ctx, &request, &dlq_id);
                    break;
                }
                Err(e) if tried == DEAD_LETTER_TRIES => {
                    self.ctx.metrics.redis_error("dead_letter");
                    letter::not_written(
                        &self.ctx,
                        &request,
                        Some(&e),
                        "the Pub/Sub message is dropped (Pub/Sub has nowhere to keep it)",
                    );
                }
                Err(_) => backoff.sleep().await,
            }
        }
        self.release(&request.receipt);
    }

    fn forget(&self, receipt: &Receipt) {
        self.release(receipt);
    }
}

/// Hands retried messages back to intake when due, until shutdown (retries
/// still waiting then are dropped: at-most-once) or until every sender is gone.
pub(crate) async fn run_retrier(
    ctx: Arc<PluginContext>,
    mut queue: RetryQueue,
    intake: Intake<PubSubSource>,
    shutdown: CancellationToken,
) {
    let mut waiting: JoinSet<Delivery> = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            request = queue.0.recv() => match request {
                Some((due, delivery)) => {
                    waiting.spawn(async move {
                        tokio::time::sleep_until(due).await;
                        delivery
                    });
                }
                None => break,
            },
            Some(Ok(delivery)) = waiting.join_next(), if !waiting.is_empty() => {
                ctx.retries.remove([&delivery.receipt()]);
                if intake.submit_held(vec![delivery]).await.is_err() {
                    break;
                }
            }
        }
    }
    if !waiting.is_empty() {
        tracing::warn!(plugin = %ctx.plugin.name, dropped = waiting.len(),
            "stopping with Pub/Sub retries still waiting in memory; they are dropped (at-most-once)");
    }
}
