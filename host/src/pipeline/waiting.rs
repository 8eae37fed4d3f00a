//! The retries this host waits on, with their due times: what the dashboard
//! lists and `streamhost_retries_waiting` counts. The source's retry
//! scheduler keeps it current; it is bounded by the entries held in flight.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use prometheus_client::metrics::gauge::Gauge;

use super::Receipt;

/// A waiting entry: the key it was read from and its id.
type Waiter = (Arc<str>, String);

/// Entries waiting here for their next attempt.
#[derive(Debug, Default)]
pub struct Waiting {
    due: Mutex<HashMap<Waiter, SystemTime>>,
    /// Mirrors the count (`streamhost_retries_waiting`).
    gauge: Gauge,
}

impl Waiting {
    /// An empty board whose size `gauge` mirrors.
    pub fn counted(gauge: Gauge) -> Waiting {
        Waiting {
            gauge,
            ..Waiting::default()
        }
    }

    /// Notes that `receipt` is due again at `due`.
    pub fn add(&self, receipt: &Receipt, due: Instant) {
        // Shown as wall-clock time; the scheduler itself runs on `Instant`.
        let wall = SystemTime::now() + due.saturating_duration_since(Instant::now());
        let mut board = self.lock();
        board.insert((receipt.key.clone(), receipt.id.clone()), wall);
        self.gauge.set(board.len() as i64);
    }

    /// Forgets receipts whose wait is over.
    pub fn remove<'a>(&self, receipts: impl IntoIterator<Item = &'a Receipt>) {
        let mut board = self.lock();
        for r in receipts {
            board.remove(&(r.key.clone(), r.id.clone()));
        }
        self.gauge.set(board.len() as i64);
    }

    /// Up to `limit` waiting entries (key, id, due), soonest first, and how
    /// many wait in all.
    pub fn soonest(&self, limit: usize) -> (Vec<(Arc<str>, String, SystemTime)>, usize) {
        let board = self.lock();
        let mut all: Vec<(Arc<str>, String, SystemTime)> = board
            .iter()
            .map(|((key, id), t)| (key.clone(), id.clone(), *t))
            .collect();
        all.sort_by_key(|(_, _, t)| *t);
        let total = all.len();
        all.truncate(limit);
        (all, total)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Waiter, SystemTime>> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Uncounted;
    use std::time::Duration;

    fn receipt(id: &str) -> Receipt {
        Receipt {
            key: "s".into(),
            id: id.into(),
            deliveries: 1,
            uncounted: Uncounted::default(),
        }
    }

    #[test]
    fn lists_soonest_first_and_the_gauge_follows() {
        let gauge = Gauge::default();
        let w = Waiting::counted(gauge.clone());
        let now = Instant::now();
        w.add(&receipt("2-0"), now + Duration::from_secs(20));
        w.add(&receipt("1-0"), now + Duration::from_secs(10));
        w.add(&receipt("3-0"), now + Duration::from_secs(30));
        assert_eq!(gauge.get(), 3);
        let (first, total) = w.soonest(2);
        assert_eq!(total, 3);
        let ids: Vec<&str> = first.iter().map(|(_, id, _)| id.as_str()).collect();
        assert_eq!(ids, ["1-0", "2-0"]);
        w.remove([&receipt("1-0"), &receipt("3-0")]);
        assert_eq!(gauge.get(), 1);
        assert_eq!(w.soonest(10).1, 1);
    }
}
