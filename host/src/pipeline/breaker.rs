//! This host's count of a plugin's traps for the circuit breaker
//! (`[plugin.breaker]`): `traps` traps within `window_ms` of the first trip
//! it. Pausing every host and resuming after the cool-down is the Redis
//! side's (`consumer/breaker.rs`).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// Traps in the current window, and whether the breaker tripped.
#[derive(Default)]
pub(crate) struct TrapWindow {
    /// When the window began, and the traps in it.
    window: Mutex<Option<(Instant, u32)>>,
    tripped: AtomicBool,
    /// Woken when it trips.
    pub(crate) wake: tokio::sync::Notify,
}

impl TrapWindow {
    /// Counts one trap; trips when the policy's threshold is reached.
    pub(crate) fn record_trap(&self, policy: &BreakerConfig) {
        if policy.traps == 0 {
            return;
        }
        let Ok(mut window) = self.window.lock() else {
            return;
        };
        let now = Instant::now();
        let (start, count) = match *window {
            Some((start, count))
                if now.duration_since(start) <= Duration::from_millis(policy.window_ms) =>
            {
                (start, count + 1)
            }
            _ => (now, 1),
        };
        if count >= policy.traps {
            *window = None;
            if !self.tripped.swap(true, Ordering::Relaxed) {
                self.wake.notify_one();
            }
        } else {
            *window = Some((start, count));
        }
    }

    /// Whether it tripped since the last call.
    pub(crate) fn take_trip(&self) -> bool {
        self.tripped.swap(false, Ordering::Relaxed)
    }

    /// Trips again (recording the pause failed; try again).
    pub(crate) fn trip_again(&self) {
        self.tripped.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_at_the_threshold_within_the_window_only() {
        let w = TrapWindow::default();
        let policy = BreakerConfig {
            traps: 3,
            window_ms: 60_000,
            cooldown_ms: 1,
        };
        w.record_trap(&policy);
        w.record_trap(&policy);
        assert!(!w.take_trip());
        w.record_trap(&policy);
        assert!(w.take_trip());
        assert!(!w.take_trip(), "taken once");
        let off = BreakerConfig {
            traps: 0,
            ..policy.clone()
        };
        for _ in 0..10 {
            w.record_trap(&off);
        }
        assert!(!w.take_trip(), "0 turns it off");
        let short = BreakerConfig {
            window_ms: 0,
            ..policy
        };
        for _ in 0..5 {
            w.record_trap(&short);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            !w.take_trip(),
            "traps further apart than the window never add up"
        );
    }
}
