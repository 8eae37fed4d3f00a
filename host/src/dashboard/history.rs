//! The overview charts' memory: per plugin, this host's counters sampled at
//! a fixed interval, the last 15 minutes only (a fixed number of points).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Time between samples.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// The window the charts cover.
pub(crate) const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Points kept per plugin: the window at the sample interval, plus one so
/// the first rate of the window has a predecessor.
pub(crate) const POINTS: usize = (WINDOW.as_secs() / SAMPLE_EVERY.as_secs()) as usize + 1;

/// One sample of a plugin's cumulative counters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Point {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Entries handed to the handler (every delivery), cumulative.
    pub received: u64,
    /// Entries acked, cumulative.
    pub acked: u64,
    /// Entries dead-lettered by this host, cumulative.
    pub dead_lettered: u64,
    /// The DLQ's length as last refreshed from Redis.
    pub dlq: i64,
}

/// The samples of every plugin, in config order.
pub(crate) struct History {
    series: Vec<Mutex<VecDeque<Point>>>,
}

impl History {
    /// Empty history for `plugins` plugins.
    pub(crate) fn new(plugins: usize) -> History {
        History {
            series: (0..plugins)
                .map(|_| Mutex::new(VecDeque::with_capacity(POINTS)))
                .collect(),
        }
    }

    /// Appends a sample for plugin `index`, dropping the oldest beyond [`POINTS`].
    pub(crate) fn push(&self, index: usize, point: Point) {
        if let Some(series) = self.series.get(index) {
            let mut s = series.lock().unwrap_or_else(PoisonError::into_inner);
            if s.len() == POINTS {
                s.pop_front();
            }
            s.push_back(point);
        }
    }

    /// Plugin `index`'s samples, oldest first.
    pub(crate) fn points(&self, index: usize) -> Vec<Point> {
        self.series.get(index).map_or_else(Vec::new, |s| {
            s.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .copied()
                .collect()
        })
    }

    /// Whether the DLQ of plugin `index` grew within the window.
    pub(crate) fn dlq_growing(&self, index: usize) -> bool {
        let points = self.points(index);
        match (points.first(), points.last()) {
            (Some(first), Some(last)) => last.dlq > first.dlq,
            _ => false,
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: u64, dlq: i64) -> Point {
        Point {
            at_ms,
            received: at_ms,
            acked: at_ms,
            dead_lettered: 0,
            dlq,
        }
    }

    #[test]
    fn keeps_the_window_only() {
        let h = History::new(1);
        for i in 0..(POINTS as u64 * 3) {
            h.push(0, point(i, 0));
        }
        let p = h.points(0);
        assert_eq!(p.len(), POINTS);
        assert_eq!(p.first().unwrap().at_ms, POINTS as u64 * 2);
        h.push(7, point(1, 0));
        assert!(h.points(7).is_empty(), "unknown plugin index ignored");
    }

    #[test]
    fn growth_of_the_dlq_is_seen() {
        let h = History::new(1);
        h.push(0, point(1, 3));
        h.push(0, point(2, 3));
        assert!(!h.dlq_growing(0));
        h.push(0, point(3, 4));
        assert!(h.dlq_growing(0));
    }
}
