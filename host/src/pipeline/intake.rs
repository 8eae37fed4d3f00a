//! The one way in: every source hands its deliveries here. Intake keeps one
//! copy of an entry in flight per host, bounds the bytes read ahead, lets
//! [`settle::before_handling`] stop deliveries that must not reach a handler,
//! and splits the rest across the workers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

use super::settle::{self, Verdict};
use super::source::{DeadLetterRequest, Source};
use super::{Batch, Delivery, PluginContext};

/// The work queue is closed: the workers are gone (shutdown).
#[derive(Debug, thiserror::Error)]
#[error("the work queue is closed")]
pub(crate) struct Closed;

/// The bytes of entries read but not yet handled, against a budget, so that
/// memory follows the budget rather than `batch` × entry size. Reads are
/// sized by the largest entry seen lately (a slowly decaying maximum): until
/// the first entry is seen, a read asks for one; after a large entry, reads
/// ask for as many as fit.
#[derive(Debug)]
pub(crate) struct ReadAhead {
    limit: usize,
    held: AtomicUsize,
    /// Bytes of the largest entry seen lately; 0 before the first.
    largest: AtomicUsize,
    room: Notify,
}

impl ReadAhead {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> ReadAhead {
        ReadAhead {
            limit: limit.max(1),
            held: AtomicUsize::new(0),
            largest: AtomicUsize::new(0),
            room: Notify::new(),
        }
    }

    /// Waits until the budget has room, then says how many entries (at most
    /// `batch`) the next read may ask for.
    pub(crate) async fn room(&self, batch: usize) -> usize {
        loop {
            // Registered before the check, so a give-back in between is not missed.
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let held = self.held.load(Ordering::Acquire);
            if held < self.limit {
                let largest = self.largest.load(Ordering::Relaxed);
                if largest == 0 {
                    return 1;
                }
                return ((self.limit - held) / largest).clamp(1, batch.max(1));
            }
            notified.await;
        }
    }

    /// Counts entries of these sizes as held: one update of the shared
    /// counters per batch, not per entry.
    fn take(&self, sizes: impl IntoIterator<Item = usize>) {
        let (mut total, mut largest, mut entries) = (0usize, 0usize, 0i32);
        for bytes in sizes {
            total += bytes;
            largest = largest.max(bytes);
            entries = entries.saturating_add(1);
        }
        self.held.fetch_add(total, Ordering::AcqRel);
        // The largest entry seen lately decays by 1/64 per entry seen.
        let old = self.largest.load(Ordering::Relaxed);
        let decayed = (old as f64 * (63.0f64 / 64.0).powi(entries)) as usize;
        self.largest.store(largest.max(decayed), Ordering::Relaxed);
    }

    /// Returns the bytes of an entry that was handled.
    pub(crate) fn give_back(&self, bytes: usize) {
        let before = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                Some(h.saturating_sub(bytes))
            })
            .unwrap_or(0);
        // Readers wait only while the budget is spent: wake them when it is
        // not any more (and spare the hot path the notifier's lock otherwise).
        if before >= self.limit && before.saturating_sub(bytes) < self.limit {
            self.room.notify_waiters();
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// The way into one plugin's work queue.
pub(crate) struct Intake<S> {
    ctx: Arc<PluginContext>,
    source: Arc<S>,
    work: async_channel::Sender<Batch>,
    read_ahead: Arc<ReadAhead>,
}

impl<S> Clone for Intake<S> {
    fn clone(&self) -> Self {
        Intake {
            ctx: self.ctx.clone(),
            source: self.source.clone(),
            work: self.work.clone(),
            read_ahead: self.read_ahead.clone(),
        }
    }
}

impl<S: Source> Intake<S> {
    /// An intake feeding `work`.
    pub(crate) fn new(
        ctx: Arc<PluginContext>,
        source: Arc<S>,
        work: async_channel::Sender<Batch>,
        read_ahead: Arc<ReadAhead>,
    ) -> Intake<S> {
        if let Some(ordering) = &ctx.ordering {
            ordering.connect(&work);
        }
        Intake {
            ctx,
            source,
            work,
            read_ahead,
        }
    }

    /// The read-ahead budget sources size their reads by.
    pub(crate) fn read_ahead(&self) -> &Arc<ReadAhead> {
        &self.read_ahead
    }

    /// Takes new deliveries: those this host already holds are dropped (a
    /// claim or redelivery racing the copy in hand, which is settled as usual).
    pub(crate) async fn submit(&self, deliveries: Vec<Delivery>) -> Result<(), Closed> {
        let admitted = self.ctx.inflight.admit(deliveries);
        self.submit_held(admitted).await
    }

    /// Takes deliveries this host already holds (its own retries).
    pub(crate) async fn submit_held(&self, deliveries: Vec<Delivery>) -> Result<(), Closed> {
        let mut ready = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match settle::before_handling(&delivery, &self.ctx.config.retry) {
                None => ready.push(delivery),
                Some(verdict) => self.settle_unhandled(delivery, verdict).await,
            }
        }
        if ready.is_empty() {
            return Ok(());
        }
        self.read_ahead.take(ready.iter().map(Delivery::bytes));
        // Parked entries keep their read-ahead bytes until handled.
        if let Some(ordering) = &self.ctx.ordering {
            ready = ordering.admit(ready, &self.ctx.inflight);
            if ready.is_empty() {
                return Ok(());
            }
        }
        self.send_split(ready).await
    }

    async fn settle_unhandled(&self, delivery: Delivery, verdict: Verdict) {
        settle::record_unhandled(&self.ctx, &delivery, &verdict);
        let receipt = delivery.receipt();
        match verdict {
            Verdict::DeadLetter { reason, error, .. } => {
                // Stored attempts are deliveries here: none of them reached an outcome.
                let request = DeadLetterRequest {
                    attempts: receipt.deliveries,
                    receipt,
                    original: super::delivery::original(
                        (&self.ctx.redeliver_stream, self.ctx.stream()),
                        &delivery.key,
                        delivery.entry.fields.unwrap_or_default(),
                        delivery.origin,
                    ),
                    reason,
                    error,
                    digest: self.ctx.running().digest.to_string(),
                };
                self.source.dead_letter(request).await;
            }
            // Only `Ack` (deleted while pending) and `DeadLetter` come before handling.
            _ => self.source.ack(vec![receipt]),
        }
    }

    /// Splits a batch so every worker gets a share, and queues the parts.
    async fn send_split(&self, mut entries: Vec<Delivery>) -> Result<(), Closed> {
        let workers = self.ctx.config.concurrency.max(1);
        let chunk = entries.len().div_ceil(workers).max(1);
        while entries.len() > chunk {
            let rest = entries.split_off(chunk);
            self.work.send(entries).await.map_err(|_| Closed)?;
            entries = rest;
        }
        self.work.send(entries).await.map_err(|_| Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_large_entry_is_forgotten_after_many_small_ones() {
        let budget = ReadAhead::new(100 << 20);
        budget.take([10 << 20]);
        assert!(budget.room(256).await <= 9, "sized by the large entry");
        budget.take([100; 200]);
        assert!(budget.room(256).await < 256, "not forgotten yet");
        budget.take([100; 1000]);
        assert_eq!(budget.room(256).await, 256, "its size has decayed away");
    }

    #[tokio::test]
    async fn reads_shrink_to_what_the_budget_holds() {
        let budget = ReadAhead::new(100 << 20);
        assert_eq!(budget.room(256).await, 1, "nothing seen yet: one entry");
        budget.take([100]);
        assert_eq!(budget.room(256).await, 256);
        budget.take([10 << 20]);
        let n = budget.room(256).await;
        assert!((1..=9).contains(&n), "{n}");
        budget.take([10 << 20; 9]);
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), budget.room(256));
        assert!(waiting.await.is_err(), "a spent budget waits");
        budget.give_back(20 << 20);
        assert!(budget.room(256).await >= 1);
        assert!(budget.held() < 100 << 20);
    }
}
