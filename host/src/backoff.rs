//! The one retry policy of the host: every loop that retries Redis work
//! (reconnecting, acking, committing, dead-lettering, re-claiming, creating a
//! missing group) waits by it, so a Redis in trouble sees a few calls per
//! second per task, never a hot loop.
//!
//! Policy: exponential from 50 ms, doubling, capped at 5 s, with jitter so
//! that many tasks do not retry in lockstep. A loop that gives up says so
//! (in its own words) and leaves the entry pending in Redis: nothing is lost.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// First delay.
pub(crate) const MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest delay between two tries.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(5);

/// The delays of one retry loop, from the host's policy.
#[derive(Debug)]
pub(crate) struct Backoff {
    delays: ExponentialBackoff,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    /// A fresh sequence of delays.
    pub(crate) fn new() -> Backoff {
        Backoff {
            delays: ExponentialBuilder::new()
                .with_min_delay(MIN_DELAY)
                .with_max_delay(MAX_DELAY)
                .with_factor(2.0)
                .with_jitter()
                .without_max_times()
                .build(),
        }
    }

    /// The next delay to wait.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(MAX_DELAY)
    }

    /// Waits the next delay unless `shutdown` fires first; returns whether to go on.
    pub(crate) async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        crate::shutdown::pause(delay, shutdown).await
    }

    /// Waits the next delay (for loops that finish their work even during shutdown).
    pub(crate) async fn sleep(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from the shortest delay (after a success).
    pub(crate) fn reset(&mut self) {
        *self = Backoff::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= MIN_DELAY && first <= MIN_DELAY * 2, "{first:?}");
        let later: Vec<Duration> = (0..20).map(|_| b.next_delay()).collect();
        assert!(later.iter().all(|d| *d <= MAX_DELAY * 2), "{later:?}");
        assert!(later[19] >= MAX_DELAY, "{later:?}");
    }
}
