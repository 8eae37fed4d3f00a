//! The entries this host holds for one plugin: read or claimed, and not yet
//! acked, dead-lettered or let go. Redis cannot tell a consumer's entry that
//! sits in this host's queue (or waits for its retry) from one whose read
//! reply was lost: both are just idle in the PEL. The claimer asks here, so it
//! re-claims only the latter and never delivers an entry twice within a host.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use prometheus_client::metrics::gauge::Gauge;

use crate::streams::Entry;

/// Ids held, plus whether the start-up replay of own pending entries is done.
#[derive(Debug, Default)]
pub struct InFlight {
    ids: Mutex<HashSet<String>>,
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
    pub fn admit(&self, entries: Vec<Entry>) -> Vec<Entry> {
        let mut ids = self.lock();
        let admitted = entries
            .into_iter()
            .filter(|e| ids.insert(e.id.clone()))
            .collect();
        self.gauge.set(ids.len() as i64);
        admitted
    }

    /// Lets go of ids that were acked, dead-lettered, or are no longer ours.
    pub fn release<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut held = self.lock();
        for id in ids {
            held.remove(id);
        }
        self.gauge.set(held.len() as i64);
    }

    /// Whether this host holds the entry.
    pub fn holds(&self, id: &str) -> bool {
        self.lock().contains(id)
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

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        // The set stays consistent even if a holder panicked: every operation
        // is a single insert or remove.
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            id: id.to_owned(),
            fields: Some(Vec::new()),
            attempt: 1,
        }
    }

    #[test]
    fn admits_each_id_once_until_released() {
        let held = InFlight::default();
        assert_eq!(held.admit(vec![entry("1-0"), entry("2-0")]).len(), 2);
        let again = held.admit(vec![entry("2-0"), entry("3-0")]);
        assert_eq!(
            again.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["3-0"]
        );
        held.release(["2-0"]);
        assert!(!held.holds("2-0"));
        assert!(held.holds("1-0"));
        assert_eq!(held.admit(vec![entry("2-0")]).len(), 1);
        assert_eq!(held.len(), 3);
    }
}
