//! The stable path's side of a shadow (`deploy --shadow`): after the
//! current version handled an entry, a copy of it with that version's
//! outcome and effects is offered to the shadow's bounded queue; when the
//! queue is full the copy is dropped and counted, so shadowing never waits
//! and never fails the stable path. The candidate runs in
//! `consumer/shadow.rs`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::sync::mpsc;

use crate::effects::Effect;
use crate::outcome::Outcome;
use crate::plugin::Message;

/// Copies waiting for the candidate, per host and plugin.
pub(crate) const QUEUE: usize = 1024;

/// One entry the current version handled.
pub(crate) struct Job {
    /// A copy of the message as the handler saw it.
    pub(crate) msg: Message,
    /// What the current version came to.
    pub(crate) outcome: Outcome,
    /// The effects it asked for.
    pub(crate) effects: Vec<Effect>,
}

/// Where the stable path hands copies to a running shadow.
#[derive(Default)]
pub(crate) struct ShadowTap {
    queue: ArcSwapOption<mpsc::Sender<Job>>,
    /// Whether `queue` is set: read first, as a load of `queue` costs more
    /// on every entry than this flag (BENCHMARKS.md, "CPU per entry").
    running: AtomicBool,
    /// Copies dropped because the queue was full (not yet reported).
    dropped: AtomicU64,
}

impl ShadowTap {
    /// Starts handing copies to `queue`.
    pub(crate) fn set(&self, queue: Option<mpsc::Sender<Job>>) {
        self.running.store(queue.is_some(), Ordering::Relaxed);
        self.queue.store(queue.map(std::sync::Arc::new));
    }

    /// Stops handing copies over (the runner ends once its queue is
    /// drained); returns whether a shadow ran.
    pub(crate) fn stop(&self) -> bool {
        self.running.store(false, Ordering::Relaxed);
        self.queue.swap(None).is_some()
    }

    /// Offers a copy of a handled entry; returns whether one was dropped.
    pub(crate) fn offer(&self, msg: &Message, outcome: &Outcome, effects: &[Effect]) -> bool {
        if !self.running.load(Ordering::Relaxed) {
            return false;
        }
        let guard = self.queue.load();
        let Some(queue) = guard.as_ref() else {
            return false;
        };
        // Full: drop before copying anything.
        if queue.capacity() == 0 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let job = Job {
            msg: msg.clone(),
            outcome: outcome.clone(),
            effects: effects.to_vec(),
        };
        match queue.try_send(job) {
            Ok(()) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Dropped copies since the last call.
    pub(crate) fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}
