//! The one decision: turns what happened to a delivery (the handler's
//! outcome, whether an instance could be made, the effect-commit state, the
//! attempt, the plugin's retry policy) into exactly one [`Verdict`], and
//! records its metric and its log line, once. Workers and sources never
//! rewrite a verdict; they carry it out.
//!
//! Attempts are handler attempts, not Redis deliveries: a delivery no
//! handler saw, or a failure of Redis rather than of the handler (a refused
//! commit, a failed state read), does not use one up (see
//! [`Delivery::attempt`](super::Delivery::attempt)).

use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
use super::Uncounted;
use super::tally::Tally;
use super::{Delivery, PluginContext, Receipt};
use crate::config::{Backoff, OnTrap, RetryConfig};
use crate::outcome::{DeadReason, FailureKind, Outcome};

/// Re-runs of a handler whose commit found its state changed, before the
/// entry is retried with backoff instead.
pub(crate) const MAX_CONFLICT_RERUNS: u32 = 16;

/// Deliveries beyond `retry.max_attempts` that may end without a handler
/// attempt (lost read replies, Redis refusals) before the entry is
/// dead-lettered as `delivered-too-often`: bounds an entry that never gets
/// handled.
pub(crate) const MAX_DELIVERIES_WITHOUT_ATTEMPT: u32 = 20;

/// What became of one attempt to commit effects together with the ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommitState {
    /// Written, and the entry acked, atomically.
    Committed,
    /// The entry belongs to another consumer now; nothing was written.
    NotOwner,
    /// State the handler read changed before the commit; nothing was written.
    Conflict,
    /// Redis could not take the commit now (out of memory, unreachable,
    /// loading, busy); nothing was written. Not the handler's failure.
    Unavailable(String),
    /// Redis refused the commit for good (a key of the wrong type); nothing
    /// was written. Counts as a failed attempt.
    Refused(String),
}

/// What the worker saw when it tried to hand an entry to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handled {
    /// The handler ran; this is what it came to.
    Ran(Outcome),
    /// No instance could be made (pool exhausted, instantiation trapped or timed out).
    NoInstance(String),
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    /// What the worker saw.
    pub handled: &'a Handled,
    /// A state read failed during the invocation (Redis's failure, and the
    /// handler may have acted on a guess).
    pub read_failed: bool,
    /// The invocation buffered effects that must be committed with the ack.
    pub has_effects: bool,
    /// The result of the commit, once tried.
    pub commit: Option<&'a CommitState>,
    /// Re-runs so far after state conflicts.
    pub conflicts: u32,
    /// The handler attempt (1-based).
    pub attempt: u32,
    /// Earlier deliveries whose settling Redis refused (to grow their backoff).
    pub refused: u32,
}

/// What happens to a delivery next: exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Acknowledge it (ok without effects, or deleted while pending).
    Ack,
    /// Commit its effects with the ack (then decide again on the result).
    Commit,
    /// Its effects and ack were committed: nothing left to do.
    Committed,
    /// Run the handler again at once (its state changed under it).
    Rerun,
    /// Deliver it again after `delay`. `failure` is the handler's failure
    /// when the attempt counts; `None` when Redis, not the handler, failed.
    Retry {
        /// How long to wait.
        delay: Duration,
        /// The handler's failure, or `None` for a refusal by Redis.
        failure: Option<FailureKind>,
        /// What went wrong.
        error: String,
    },
    /// Move it to the dead letters with a reason that says what happened.
    DeadLetter {
        /// The stored reason.
        reason: DeadReason,
        /// What failed.
        failure: FailureKind,
        /// The last error.
        error: String,
    },
    /// Another consumer owns it now: let go without writing anything.
    LeaveToOwner,
}

/// Decides, before any handler runs, what happens to a delivery that must
/// not reach one: deleted while pending, or out of attempts (its earlier
/// deliveries ended without an outcome). `None`: hand it to a worker.
pub(crate) fn before_handling(delivery: &Delivery, policy: &RetryConfig) -> Option<Verdict> {
    let Some(fields) = &delivery.entry.fields else {
        return Some(Verdict::Ack);
    };
    // WIT 0.1 carries names as strings: an entry with a name that is not
    // UTF-8 cannot reach the handler unchanged, so it does not reach it.
    // (A replayed entry's names carry the ASCII `msg.` prefix, which keeps
    // this check the same.)
    if let Some(index) = fields
        .iter()
        .position(|f| std::str::from_utf8(&f.name).is_err())
    {
        let name = crate::display::escape_bytes(&fields[index].name);
        return Some(Verdict::DeadLetter {
            reason: DeadReason::FieldNameNotUtf8,
            failure: FailureKind::Undeliverable,
            error: crate::streams::entry::NameNotUtf8 { index, name }.to_string(),
        });
    }
    let (attempt, deliveries) = (delivery.attempt(), delivery.entry.attempt);
    let reachable = delivery.reachable_deliveries();
    if attempt > policy.max_attempts {
        return Some(Verdict::DeadLetter {
            reason: DeadReason::AttemptsExhausted,
            failure: FailureKind::NoOutcome,
            error: format!(
                "delivered {deliveries} times, more than retry.max_attempts = {} allows; \
                 the last delivery ended without an outcome (a host died or stopped while handling it)",
                policy.max_attempts
            ),
        });
    }
    let cap = policy
        .max_attempts
        .saturating_add(MAX_DELIVERIES_WITHOUT_ATTEMPT);
    if reachable > cap {
        return Some(Verdict::DeadLetter {
            reason: DeadReason::DeliveredTooOften,
            failure: FailureKind::NoOutcome,
            error: format!(
                "delivered {deliveries} times for {} handler attempt(s): its deliveries keep \
                 ending before a handler runs or with Redis refusing to settle it",
                attempt.saturating_sub(1)
            ),
        });
    }
    None
}

/// Decides a delivery's fate after the worker tried to handle it.
pub(crate) fn decide(facts: &Facts<'_>, policy: &RetryConfig) -> Verdict {
    let outcome = match facts.handled {
        Handled::NoInstance(error) => {
            return fail(
                FailureKind::Instantiate,
                DeadReason::Instantiate,
                error,
                facts,
                policy,
            );
        }
        Handled::Ran(outcome) => outcome,
    };
    match outcome {
        Outcome::Ok if facts.read_failed => redis_failed(
            "a state read failed; effects not committed".to_owned(),
            facts,
            policy,
        ),
        Outcome::Ok if !facts.has_effects => Verdict::Ack,
        Outcome::Ok => match facts.commit {
            None => Verdict::Commit,
            Some(CommitState::Committed) => Verdict::Committed,
            Some(CommitState::NotOwner) => Verdict::LeaveToOwner,
            Some(CommitState::Conflict) if facts.conflicts < MAX_CONFLICT_RERUNS => Verdict::Rerun,
            Some(CommitState::Conflict) => redis_failed(
                "state kept changing under the handler".to_owned(),
                facts,
                policy,
            ),
            Some(CommitState::Unavailable(e)) => {
                redis_failed(format!("commit not made: {e}"), facts, policy)
            }
            Some(CommitState::Refused(e)) => fail(
                FailureKind::Commit,
                DeadReason::AttemptsExhausted,
                &format!("commit refused: {e}"),
                facts,
                policy,
            ),
        },
        Outcome::Reject(reason) => Verdict::DeadLetter {
            reason: DeadReason::Rejected,
            failure: FailureKind::Rejected,
            error: reason.clone(),
        },
        Outcome::Retry(reason) => fail(
            FailureKind::Retry,
            DeadReason::AttemptsExhausted,
            reason,
            facts,
            policy,
        ),
        Outcome::Trap(kind, text) => {
            let error = format!("{kind}: {text}");
            if policy.on_trap == OnTrap::DeadLetter {
                return Verdict::DeadLetter {
                    reason: DeadReason::Trapped(*kind),
                    failure: FailureKind::Trap(*kind),
                    error,
                };
            }
            fail(
                FailureKind::Trap(*kind),
                DeadReason::AttemptsExhausted,
                &error,
                facts,
                policy,
            )
        }
    }
}

/// A failed handler attempt: retried while attempts remain.
fn fail(
    failure: FailureKind,
    exhausted: DeadReason,
    error: &str,
    facts: &Facts<'_>,
    policy: &RetryConfig,
) -> Verdict {
    if facts.attempt >= policy.max_attempts {
        return Verdict::DeadLetter {
            reason: exhausted,
            failure,
            error: error.to_owned(),
        };
    }
    Verdict::Retry {
        delay: backoff(policy, facts.attempt),
        failure: Some(failure),
        error: error.to_owned(),
    }
}

/// Redis, not the handler, failed: settle again later, the attempt unspent.
fn redis_failed(error: String, facts: &Facts<'_>, policy: &RetryConfig) -> Verdict {
    Verdict::Retry {
        delay: backoff(policy, facts.refused.saturating_add(1)),
        failure: None,
        error,
    }
}

/// Delay before the attempt after `attempt`, with up to 20% jitter below the
/// computed value so that a burst of failures does not retry in lockstep.
pub(crate) fn backoff(policy: &RetryConfig, attempt: u32) -> Duration {
    let base = match policy.backoff {
        Backoff::Fixed => policy.initial_ms,
        Backoff::Exponential => {
            let shift = attempt.saturating_sub(1).min(32);
            policy.initial_ms.saturating_mul(1u64 << shift)
        }
    }
    .min(policy.max_ms);
    let jitter = if base >= 5 {
        rand::random_range(0..=base / 5)
    } else {
        0
    };
    Duration::from_millis(base - jitter)
}

/// Records the metrics and the log line of a verdict [`before_handling`] made.
pub(crate) fn record_unhandled(ctx: &PluginContext, delivery: &Delivery, verdict: &Verdict) {
    if delivery.entry.fields.is_none() {
        // Done with here too: a retry whose entry was trimmed meanwhile.
        if let Some(ordering) = &ctx.ordering {
            ordering.finish(&delivery.receipt());
        }
        ctx.metrics.trimmed.inc();
        tracing::warn!(
            plugin = &*ctx.plugin.name,
            stream = &*delivery.key,
            id = delivery.entry.id,
            "pending entry was deleted or trimmed before it was handled; acking it"
        );
        return;
    }
    let version = ctx.running().digest.clone();
    let mut tally = Tally::new(ctx);
    record(ctx, &delivery.receipt(), verdict, &version, &mut tally);
    tally.flush(ctx);
}

/// Records a final verdict's metrics and its one log line. Counts of
/// handled entries go to the worker's `tally`, added to the shared metrics
/// at its next flush.
pub(crate) fn record(
    ctx: &PluginContext,
    receipt: &Receipt,
    verdict: &Verdict,
    digest: &Arc<str>,
    tally: &mut Tally,
) {
    let version: &str = digest;
    // Done with on this host: the next entry of its ordering key may run.
    if let Some(ordering) = &ctx.ordering
        && matches!(
            verdict,
            Verdict::Ack | Verdict::Committed | Verdict::LeaveToOwner | Verdict::DeadLetter { .. }
        )
    {
        ordering.finish(receipt);
    }
    let (plugin, stream, id, attempt) = (
        &*ctx.plugin.name,
        &*receipt.key,
        receipt.id.as_str(),
        receipt.attempt(),
    );
    let m = &ctx.metrics;
    match verdict {
        Verdict::Commit => {}
        // Handled: its latency ends here (the ack's own round trip is
        // `redis_round_trip_seconds{op="ack"}`; `acked` counts what XACK acked).
        Verdict::Ack => tally.handled(id),
        Verdict::Committed => {
            m.acked.inc();
            tally.handled(id);
        }
        Verdict::Rerun => {
            m.effect_conflicts.inc();
        }
        Verdict::LeaveToOwner => {
            tracing::info!(
                plugin,
                stream,
                id,
                "entry was claimed by another consumer meanwhile; its effects were not committed"
            );
        }
        Verdict::Retry {
            failure: None,
            error,
            delay,
        } => {
            m.postponed.inc();
            tracing::warn!(plugin, stream, version, id, attempt, error, retry_in = ?delay,
                "Redis could not settle the entry; it stays pending and is settled again later (not counted as an attempt)");
        }
        Verdict::Retry {
            failure: Some(kind),
            error,
            ..
        } => {
            m.failed(*kind).inc();
            m.retried.inc();
            log_failure(plugin, stream, version, id, attempt, *kind, error);
        }
        Verdict::DeadLetter { failure, error, .. } => {
            m.failed(*failure).inc();
            // A rejection or a last retry is told by the source's one
            // `dead-lettered` line (with reason, error and the DLQ) once the
            // letter is written; other failures are events of their own.
            if !matches!(failure, FailureKind::Retry | FailureKind::Rejected) {
                log_failure(plugin, stream, version, id, attempt, *failure, error);
            }
        }
    }
    // Each version's outcome, for its metrics and a canary's judgement.
    if let Some(failed) = attempt_failed(verdict) {
        // Counted at the worker's next flush; the canary judges each
        // attempt at once, so a failing candidate stops taking entries
        // within one of `canary.min_entries` (a flag check when none runs).
        tally.attempt(digest, failed);
        ctx.canary.record(version, failed, &ctx.config.canary);
    }
    if let Verdict::Retry {
        failure: Some(FailureKind::Trap(_)),
        ..
    }
    | Verdict::DeadLetter {
        failure: FailureKind::Trap(_),
        ..
    } = verdict
    {
        ctx.breaker.record_trap(&ctx.config.breaker);
    }
}

/// Whether a final verdict ends a failed handler attempt (rejected,
/// trapped, asked for a retry); `None` for verdicts that end no attempt
/// (a commit to make, a re-run, a refusal by Redis, another owner).
fn attempt_failed(verdict: &Verdict) -> Option<bool> {
    match verdict {
        Verdict::Ack | Verdict::Committed => Some(false),
        Verdict::Retry {
            failure: Some(_), ..
        }
        | Verdict::DeadLetter { .. } => Some(true),
        Verdict::Commit | Verdict::Rerun | Verdict::LeaveToOwner | Verdict::Retry { .. } => None,
    }
}

fn log_failure(
    plugin: &str,
    stream: &str,
    version: &str,
    id: &str,
    attempt: u32,
    kind: FailureKind,
    reason: &str,
) {
    match kind {
        FailureKind::Retry => tracing::info!(
            plugin,
            stream,
            version,
            id,
            attempt,
            reason,
            "handler asked for a retry"
        ),
        FailureKind::Rejected => tracing::info!(
            plugin,
            stream,
            version,
            id,
            attempt,
            reason,
            "handler rejected the entry"
        ),
        FailureKind::Trap(kind) => {
            tracing::warn!(plugin, stream, version, id, attempt, kind = %kind, error = reason, "handler trapped; instance discarded")
        }
        FailureKind::Instantiate => {
            tracing::error!(
                plugin,
                stream,
                version,
                id,
                attempt,
                error = reason,
                "cannot instantiate the plugin for this entry"
            )
        }
        FailureKind::Commit => {
            tracing::error!(
                plugin,
                stream,
                version,
                id,
                attempt,
                error = reason,
                "Redis refused the handler's effects; nothing written"
            )
        }
        FailureKind::NoOutcome => {
            tracing::warn!(
                plugin,
                stream,
                id,
                attempt,
                error = reason,
                "entry delivered too often without an outcome; not handing it to a handler again"
            )
        }
        FailureKind::Undeliverable => {
            tracing::warn!(
                plugin,
                stream,
                id,
                attempt,
                error = reason,
                "entry cannot be handed to the handler; dead-lettering it unhandled"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::TrapKind;
    use crate::streams::Entry;

    fn policy() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            initial_ms: 100,
            max_ms: 1000,
            ..RetryConfig::default()
        }
    }

    fn facts(handled: &Handled, attempt: u32) -> Facts<'_> {
        Facts {
            handled,
            read_failed: false,
            has_effects: false,
            commit: None,
            conflicts: 0,
            attempt,
            refused: 0,
        }
    }

    fn dead(v: &Verdict) -> Option<&DeadReason> {
        match v {
            Verdict::DeadLetter { reason, .. } => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn retry_until_attempts_run_out() {
        let p = policy();
        let retry = Handled::Ran(Outcome::Retry("later".into()));
        for attempt in 1..=2 {
            assert!(matches!(
                decide(&facts(&retry, attempt), &p),
                Verdict::Retry {
                    failure: Some(FailureKind::Retry),
                    ..
                }
            ));
        }
        assert_eq!(
            decide(&facts(&retry, 3), &p),
            Verdict::DeadLetter {
                reason: DeadReason::AttemptsExhausted,
                failure: FailureKind::Retry,
                error: "later".into()
            }
        );
    }

    #[test]
    fn reject_dead_letters_at_once() {
        let reject = Handled::Ran(Outcome::Reject("bad".into()));
        assert_eq!(
            dead(&decide(&facts(&reject, 1), &policy())),
            Some(&DeadReason::Rejected)
        );
    }

    #[test]
    fn trap_follows_on_trap() {
        let mut p = policy();
        let trap = Handled::Ran(Outcome::Trap(TrapKind::Fuel, "x".into()));
        assert!(matches!(
            decide(&facts(&trap, 1), &p),
            Verdict::Retry { .. }
        ));
        p.on_trap = OnTrap::DeadLetter;
        assert_eq!(
            dead(&decide(&facts(&trap, 1), &p)),
            Some(&DeadReason::Trapped(TrapKind::Fuel))
        );
    }

    #[test]
    fn instantiation_failure_is_an_attempt_and_dead_letters_as_instantiate() {
        let p = policy();
        let none = Handled::NoInstance("pool exhausted".into());
        assert!(matches!(
            decide(&facts(&none, 2), &p),
            Verdict::Retry {
                failure: Some(FailureKind::Instantiate),
                ..
            }
        ));
        assert_eq!(
            dead(&decide(&facts(&none, 3), &p)),
            Some(&DeadReason::Instantiate)
        );
    }

    #[test]
    fn redis_refusals_never_use_up_attempts() {
        let p = policy();
        let ok = Handled::Ran(Outcome::Ok);
        let refused = CommitState::Unavailable("OOM".into());
        let mut f = facts(&ok, 3);
        f.has_effects = true;
        assert_eq!(decide(&f, &p), Verdict::Commit);
        f.commit = Some(&refused);
        assert!(matches!(
            decide(&f, &p),
            Verdict::Retry { failure: None, .. }
        ));
        let wrong = CommitState::Refused("WRONGTYPE".into());
        f.commit = Some(&wrong);
        assert!(matches!(
            decide(&f, &p),
            Verdict::DeadLetter {
                failure: FailureKind::Commit,
                ..
            }
        ));
        let mut f = facts(&ok, 3);
        f.read_failed = true;
        assert!(matches!(
            decide(&f, &p),
            Verdict::Retry { failure: None, .. }
        ));
    }

    #[test]
    fn commit_results_map_to_one_verdict_each() {
        let p = policy();
        let ok = Handled::Ran(Outcome::Ok);
        let cases = [
            (CommitState::Committed, Verdict::Committed),
            (CommitState::NotOwner, Verdict::LeaveToOwner),
            (CommitState::Conflict, Verdict::Rerun),
        ];
        for (state, want) in cases {
            let mut f = facts(&ok, 1);
            f.has_effects = true;
            f.commit = Some(&state);
            assert_eq!(decide(&f, &p), want, "{state:?}");
        }
        let conflict = CommitState::Conflict;
        let mut f = facts(&ok, 1);
        f.has_effects = true;
        f.commit = Some(&conflict);
        f.conflicts = MAX_CONFLICT_RERUNS;
        assert!(matches!(
            decide(&f, &p),
            Verdict::Retry { failure: None, .. }
        ));
    }

    fn delivery(deliveries: u32, unseen: u32, refused: u32) -> Delivery {
        Delivery {
            key: "s".into(),
            entry: Entry {
                id: "1-0".into(),
                fields: Some(Vec::new()),
                attempt: deliveries,
            },
            uncounted: Uncounted { unseen, refused },
            origin: Default::default(),
        }
    }

    #[test]
    fn deliveries_no_handler_saw_do_not_exhaust_attempts() {
        let p = RetryConfig {
            max_attempts: 1,
            ..policy()
        };
        assert_eq!(before_handling(&delivery(1, 0, 0), &p), None);
        // A lost read reply, then a re-claim: the second delivery is the first attempt.
        assert_eq!(before_handling(&delivery(2, 1, 0), &p), None);
        assert_eq!(
            before_handling(&delivery(2, 0, 0), &p)
                .as_ref()
                .and_then(dead),
            Some(&DeadReason::AttemptsExhausted)
        );
        let cap = p.max_attempts + MAX_DELIVERIES_WITHOUT_ATTEMPT;
        assert_eq!(
            before_handling(&delivery(cap + 1, cap, 0), &p)
                .as_ref()
                .and_then(dead),
            Some(&DeadReason::DeliveredTooOften)
        );
        // However long Redis keeps refusing, that alone never dead-letters.
        assert_eq!(before_handling(&delivery(500, 0, 499), &p), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy();
        let d1 = backoff(&p, 1).as_millis();
        let d3 = backoff(&p, 3).as_millis();
        let d9 = backoff(&p, 9).as_millis();
        assert!((80..=100).contains(&d1), "{d1}");
        assert!((320..=400).contains(&d3), "{d3}");
        assert!((800..=1000).contains(&d9), "{d9}");
    }
}
