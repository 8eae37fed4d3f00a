//! The interface between the pipeline and where entries come from. A source
//! finds deliveries and hands them to [`Intake`](super::intake::Intake); once
//! [`settle`](super::settle) has decided an entry's fate, the source carries
//! it out with its own Redis commands.
//!
//! What each action means is the source's business: for a stream, `ack` is
//! `XACK`, `retry` re-claims the entry after the delay, `dead_letter` runs the
//! dead-letter script; a list would `LREM` its processing list or re-push the
//! item with its attempt count; Pub/Sub would retry in memory. Every action
//! targets [`Receipt::key`], the key the delivery was read from, so one source
//! type serves several keys (a stream and its redelivery stream) unchanged.
//!
//! Actions never hold the calling worker for long: work that Redis refuses
//! or cannot take now is retried by the source in the background, with the
//! host's [`backoff`](crate::backoff) policy, while the entry stays pending.

use std::future::Future;
use std::time::Duration;

use super::Receipt;
use super::delivery::Original;
use super::settle::CommitState;
use crate::effects::EffectBuffer;
use crate::outcome::DeadReason;

/// A dead letter to write.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterRequest {
    /// The delivery being dead-lettered.
    pub receipt: Receipt,
    /// The entry as first written (a replayed entry unwrapped), byte for byte.
    pub original: Original,
    /// Why; stored as `dlq.reason`.
    pub reason: DeadReason,
    /// The last error, stored as `dlq.error`.
    pub error: String,
    /// `sha256:<hex>` of the component version that made the last attempt.
    pub digest: String,
    /// The handler attempts made, stored as `dlq.attempts`.
    pub attempts: u32,
}

/// Where entries come from, and how the pipeline's verdicts are carried out there.
pub(crate) trait Source: Send + Sync + 'static {
    /// Acknowledges handled deliveries (the worker batches them). Hands off
    /// at once; failures are the source's to retry.
    fn ack(&self, done: Vec<Receipt>);

    /// Commits an invocation's effects together with the ack, once, if the
    /// delivery is still this consumer's. Never retried here: the pipeline
    /// decides what a refusal means.
    fn commit(
        &self,
        receipt: &Receipt,
        effects: &EffectBuffer,
    ) -> impl Future<Output = CommitState> + Send;

    /// Delivers the entry again no sooner than `delay`. `attempt_used` says
    /// whether the delivery counted as a handler attempt (a refusal by Redis
    /// does not).
    fn retry(&self, receipt: Receipt, delay: Duration, attempt_used: bool);

    /// Moves the entry to its dead letters atomically with its ack. Tries
    /// once in place; a failure is retried in the background (the entry
    /// stays pending meanwhile).
    fn dead_letter(&self, request: DeadLetterRequest) -> impl Future<Output = ()> + Send;

    /// Forgets a delivery that needs no further command: committed with its
    /// effects (the commit acked it), or owned by another consumer now.
    fn forget(&self, receipt: &Receipt);
}
