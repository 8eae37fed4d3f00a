//! Whether Redis answers, as the host's loops see it. Loops report each
//! failed and each successful Redis call here instead of logging a failure
//! every time they retry: the tracker logs one line when Redis stops
//! answering, one when it is back, and a summary every [`SUMMARY_EVERY`]
//! while it stays down (an outage of 14 s used to write 87 WARN lines).

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often an outage is summarised while it lasts.
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// Longest error text kept for the summary line.
const MAX_ERROR_CHARS: usize = 300;

/// The host-wide view of Redis's health; shared by every loop of every plugin.
#[derive(Debug)]
pub struct RedisHealth {
    state: Mutex<State>,
    summary_every: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// Set while Redis is down.
    outage: Option<Outage>,
}

#[derive(Debug)]
struct Outage {
    since: Instant,
    last_summary: Instant,
    /// Failed calls by operation, since the outage began.
    failures: BTreeMap<&'static str, u64>,
    last_error: String,
}

impl Default for RedisHealth {
    fn default() -> Self {
        RedisHealth::new(SUMMARY_EVERY)
    }
}

impl RedisHealth {
    /// A tracker that summarises an outage every `summary_every`.
    pub fn new(summary_every: Duration) -> RedisHealth {
        RedisHealth {
            state: Mutex::new(State::default()),
            summary_every,
        }
    }

    /// Whether the last call reported succeeded (or none failed yet).
    pub fn is_up(&self) -> bool {
        self.state.lock().map_or(true, |s| s.outage.is_none())
    }

    /// How long Redis has been down, if it is.
    pub fn down_for(&self) -> Option<Duration> {
        let state = self.state.lock().ok()?;
        state.outage.as_ref().map(|o| o.since.elapsed())
    }

    /// Reports that `op` (`read`, `ack`, `claim`, ...) failed to reach Redis.
    /// Logs when this starts an outage, and the summary when one is due.
    pub fn failed(&self, op: &'static str, error: &dyn Display) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let now = Instant::now();
        let error = bounded(error);
        match &mut state.outage {
            None => {
                tracing::warn!(op, %error,
                    "Redis does not answer; retrying (one summary every {}s until it is back)",
                    self.summary_every.as_secs());
                state.outage = Some(Outage {
                    since: now,
                    last_summary: now,
                    failures: BTreeMap::from([(op, 1)]),
                    last_error: error,
                });
            }
            Some(outage) => {
                *outage.failures.entry(op).or_default() += 1;
                outage.last_error = error;
                if now.duration_since(outage.last_summary) >= self.summary_every {
                    outage.last_summary = now;
                    tracing::warn!(
                        down_for_s = outage.since.elapsed().as_secs(),
                        failed_calls = %summary(&outage.failures),
                        last_error = %outage.last_error,
                        "Redis still does not answer"
                    );
                }
            }
        }
    }

    /// Reports a call that reached Redis; logs the end of an outage.
    pub fn succeeded(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if let Some(outage) = state.outage.take() {
            tracing::info!(
                down_for_ms = u64::try_from(outage.since.elapsed().as_millis()).unwrap_or(u64::MAX),
                failed_calls = %summary(&outage.failures),
                "Redis answers again"
            );
        }
    }
}

/// `ack=3 read=12`.
fn summary(failures: &BTreeMap<&'static str, u64>) -> String {
    failures
        .iter()
        .map(|(op, n)| format!("{op}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn bounded(error: &dyn Display) -> String {
    let text = error.to_string();
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Whether a redis-rs error means Redis did not answer (connection refused,
/// dropped, timed out), rather than an answer that was an error.
pub(crate) fn is_unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_one_state_with_counts_until_a_success() {
        let health = RedisHealth::new(Duration::from_millis(20));
        assert!(health.is_up());
        for _ in 0..100 {
            health.failed("read", &"connection refused");
        }
        health.failed("ack", &"connection refused");
        assert!(!health.is_up());
        assert!(health.down_for().is_some());
        {
            let state = health.state.lock().unwrap();
            let outage = state.outage.as_ref().unwrap();
            assert_eq!(summary(&outage.failures), "ack=1 read=100");
        }
        health.succeeded();
        assert!(health.is_up());
        assert!(health.down_for().is_none());
    }

    #[test]
    fn long_errors_are_cut() {
        let long = "x".repeat(10_000);
        assert!(bounded(&long).len() < 400);
    }
}
