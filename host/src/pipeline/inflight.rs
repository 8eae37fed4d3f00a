//! The entries this host holds for one plugin: read or claimed, and not yet
//! acked, dead-lettered or let go. Redis cannot tell a consumer's entry that
//! sits in this host's queue (or waits for its retry) from one whose read
//! reply was lost: both are just idle in the PEL. The claimer asks here, so it
//! re-claims only the latter and never delivers an entry twice within a host.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use foldhash::fast::RandomState;
use prometheus_client::metrics::gauge::Gauge;

use super::delivery::Delivery;

/// Keys whose emptied id set is kept (a stream and its redelivery stream,
/// a few queues); beyond that, emptied sets are removed, so Pub/Sub
/// channels seen once do not pile up.
const KEEP_EMPTY_KEYS: usize = 8;

/// The held entries: ids by the key they were read from (two source keys
/// may hold equal ids; almost always there is one key).
#[derive(Debug, Default)]
struct Held {
    by_key: HashMap<Arc<str>, Ids, RandomState>,
    count: usize,
}

/// One key's held ids. Stream ids (`<ms>-<seq>` in Redis's canonical form,
/// all a stream source delivers) are kept as their two numbers, so admitting
/// and releasing one allocates nothing and hashes 16 bytes; any other id (a
/// queue source's token, a 20-digit part) is kept as text. The two sets
/// never hold the same id: only the canonical spelling parses, and it
/// formats back to itself.
#[derive(Debug, Default)]
struct Ids {
    stream: HashSet<(u64, u64), RandomState>,
    other: HashSet<Box<str>, RandomState>,
}

impl Ids {
    fn insert(&mut self, id: &str) -> bool {
        match crate::streams::id::canonical(id.as_bytes()) {
            Some(numbers) => self.stream.insert(numbers),
            None => self.other.insert(id.into()),
        }
    }

    fn remove(&mut self, id: &str) -> bool {
        match crate::streams::id::canonical(id.as_bytes()) {
            Some(numbers) => self.stream.remove(&numbers),
            None => self.other.remove(id),
        }
    }

    fn contains(&self, id: &str) -> bool {
        match crate::streams::id::canonical(id.as_bytes()) {
            Some(numbers) => self.stream.contains(&numbers),
            None => self.other.contains(id),
        }
    }

    fn is_empty(&self) -> bool {
        self.stream.is_empty() && self.other.is_empty()
    }
}

/// Entries held, plus whether the start-up replay of own pending entries is done.
#[derive(Debug, Default)]
pub struct InFlight {
    ids: Mutex<Held>,
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
        let mut held = self.lock();
        let Held { by_key, count } = &mut *held;
        let mut admitted = Vec::with_capacity(deliveries.len());
        let mut rest = deliveries.into_iter().peekable();
        // A batch comes from one key (or a few, in runs): its id set is
        // looked up once per run, not once per entry.
        while let Some(first) = rest.next() {
            let key = first.key.clone();
            let ids = match by_key.get_mut(&*key) {
                Some(ids) => ids,
                None => by_key.entry(key.clone()).or_default(),
            };
            let mut take = |d: Delivery| {
                let new = ids.insert(&d.entry.id);
                *count += usize::from(new);
                if new {
                    admitted.push(d);
                }
            };
            take(first);
            while let Some(d) = rest.next_if(|d| Arc::ptr_eq(&d.key, &key)) {
                take(d);
            }
        }
        self.gauge.set(*count as i64);
        admitted
    }

    /// Lets go of ids read from `key` that were acked, dead-lettered, or are
    /// no longer ours.
    pub fn release<'a>(&self, key: &Arc<str>, ids: impl IntoIterator<Item = &'a str>) {
        let mut held = self.lock();
        let held = &mut *held;
        if let Some(set) = held.by_key.get_mut(&**key) {
            for id in ids {
                held.count -= usize::from(set.remove(id));
            }
            // An emptied set keeps its capacity for the next batch of its
            // key, unless many keys (Pub/Sub channels) are being seen.
            if set.is_empty() && held.by_key.len() > KEEP_EMPTY_KEYS {
                held.by_key.remove(&**key);
            }
        }
        self.gauge.set(held.count as i64);
    }

    /// Whether this host holds entry `id` of `key`.
    pub fn holds(&self, key: &Arc<str>, id: &str) -> bool {
        self.lock()
            .by_key
            .get(&**key)
            .is_some_and(|ids| ids.contains(id))
    }

    /// How many entries this host holds.
    pub fn len(&self) -> usize {
        self.lock().count
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

    fn lock(&self) -> MutexGuard<'_, Held> {
        // The set stays consistent even if a holder panicked: no operation
        // panics between changing a set and its count.
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

    #[test]
    fn ids_are_held_exactly_short_or_long() {
        let held = InFlight::default();
        let key: Arc<str> = Arc::from("s");
        let long = "t".repeat(60);
        let ids = [
            long.as_str(),
            "9999999999999999999-1234567890123456789",
            "0-0",
            "18446744073709551615-18446744073709551615",
            "18446744073709551616-0",
            "01-0",
            "1-00",
            "+1-0",
            "1-",
            "-1",
            "token-7",
            "1700000000000-3",
        ];
        assert_eq!(
            held.admit(ids.iter().map(|id| entry(id)).collect()).len(),
            ids.len()
        );
        for id in ids {
            assert!(held.holds(&key, id), "{id}");
        }
        assert!(!held.holds(&key, "1-0"));
        assert!(!held.holds(&key, "1700000000000-03"));
        assert!(!held.holds(&key, &long[1..]));
        held.release(&key, ids);
        assert!(held.is_empty());
    }
}
