//! The entries this host holds for one plugin: read or claimed, and not yet
//! acked, dead-lettered or let go. Redis cannot tell a consumer's entry that
//! sits in this host's queue (or waits for its retry) from one whose read
//! reply was lost: both are just idle in the PEL. The claimer asks here, so it
//! re-claims only the latter and never delivers an entry twice within a host.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use foldhash::fast::RandomState;
use prometheus_client::metrics::gauge::Gauge;

use super::delivery::Delivery;

/// A held entry: the key it was read from and its id (two source keys may
/// hold equal ids).
type Held = (Arc<str>, String);

/// Entries held, plus whether the start-up replay of own pending entries is done.
#[derive(Debug, Default)]
pub struct InFlight {
    ids: Mutex<HashSet<Held, RandomState>>,
    /// Until the reader has replayed this consumer's pending entries, those
    /// are the reader's to deliver, not the claimer's.
    replayed: AtomicBool,
    /// Mirrors the count (`streamhost_entries_in_flight`).
    gauge: Gauge,
}

impl InFlight {
    /// An empty set whose size `gauge` mirrors.
    pub fn counted(gauge: Gauge) -> InFlight {
        InFlight {
            gauge,
            ..InFlight::default()
        }
    }

    /// Marks entries as held and returns them, minus those already held: a
    /// second copy (a claim or redelivery racing the first) is dropped, and
    /// the copy in hand is acked or dead-lettered as usual.
    pub fn admit(&self, deliveries: Vec<Delivery>) -> Vec<Delivery> {
        let mut ids = self.lock();
        let admitted = deliveries
            .into_iter()
            .filter(|d| ids.insert((d.key.clone(), d.entry.id.clone())))
            .collect();
        self.gauge.set(ids.len() as i64);
        admitted
    }

    /// Lets go of ids read from `key` that were acked, dead-lettered, or are
    /// no longer ours.
    pub fn release<'a>(&self, key: &Arc<str>, ids: impl IntoIterator<Item = &'a str>) {
        let mut held = self.lock();
        let mut probe: Held = (key.clone(), String::new());
        for id in ids {
            id.clone_into(&mut probe.1);
            held.remove(&probe);
        }
        self.gauge.set(held.len() as i64);
    }

    /// Whether this host holds entry `id` of `key`.
    pub fn holds(&self, key: &Arc<str>, id: &str) -> bool {
        self.lock().contains(&(key.clone(), id.to_owned()))
    }

    /// How many entries this host holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records that the reader has replayed this consumer's own pending entries.
    pub fn set_replayed(&self) {
        self.replayed.store(true, Ordering::Release);
    }

    /// Whether the reader has replayed this consumer's own pending entries.
    pub fn replayed(&self) -> bool {
        self.replayed.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<Held, RandomState>> {
        // The set stays consistent even if a holder panicked: every operation
        // is a single insert or remove.
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Delivery {
        Delivery::new(
            Arc::from("s"),
            crate::streams::Entry {
                id: id.to_owned(),
                fields: Some(Vec::new()),
                attempt: 1,
            },
        )
    }

    #[test]
    fn admits_each_id_once_until_released() {
        let held = InFlight::default();
        assert_eq!(held.admit(vec![entry("1-0"), entry("2-0")]).len(), 2);
        let again = held.admit(vec![entry("2-0"), entry("3-0")]);
        assert_eq!(
            again
                .iter()
                .map(|d| d.entry.id.as_str())
                .collect::<Vec<_>>(),
            ["3-0"]
        );
        let key: Arc<str> = Arc::from("s");
        held.release(&key, ["2-0"]);
        assert!(!held.holds(&key, "2-0"));
        assert!(held.holds(&key, "1-0"));
        assert!(!held.holds(&Arc::from("other"), "1-0"));
        assert_eq!(held.admit(vec![entry("2-0")]).len(), 1);
        assert_eq!(held.len(), 3);
    }
}
