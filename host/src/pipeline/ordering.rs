//! Per-key ordering (`ordering = { key = "FIELD" }`): entries whose FIELD
//! holds the same bytes run one at a time, in the order they reached intake;
//! entries of different keys run in parallel across the workers.
//!
//! Each key value has a lane: the one entry that holds it (queued, being
//! handled, or waiting for its retry) and the deliveries parked behind it.
//! Intake calls [`Ordering::admit`] (parks what must wait); settle calls
//! [`Ordering::finish`] once an entry's fate on this host is final (acked,
//! committed, dead-lettered, left to another consumer), which sends the next
//! parked entry of that key to the workers. A retry keeps the hold, so it
//! delays only later entries of its own key. Without `ordering` none of this
//! runs (the context holds no [`Ordering`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use foldhash::fast::RandomState;

use super::inflight::InFlight;
use super::{Batch, Delivery, Receipt};

/// An entry on this host: the key it was read from and its id.
type Held = (Arc<str>, String);

/// One plugin's lanes.
pub(crate) struct Ordering {
    /// The field whose value is the ordering key.
    field: Box<[u8]>,
    /// The redelivery stream, whose entries (replayed dead letters) carry
    /// the original fields under `msg.` names.
    redeliver_stream: Box<str>,
    /// The key field's name there.
    redelivered_field: Box<[u8]>,
    state: Mutex<State>,
    /// The work queue parked entries are sent to once their turn comes;
    /// weak, so that the queue still closes at shutdown when the feeders'
    /// intakes are gone (the workers then drain and stop).
    work: OnceLock<async_channel::WeakSender<Batch>>,
}

#[derive(Default)]
struct State {
    lanes: HashMap<Vec<u8>, Lane, RandomState>,
    /// The key value each holder holds.
    holders: HashMap<Held, Vec<u8>, RandomState>,
}

struct Lane {
    holder: Held,
    parked: VecDeque<Delivery>,
}

impl Ordering {
    /// Lanes keyed by the value of `field`; replayed entries are read from
    /// `redeliver_stream` and keep their key's lane.
    pub(crate) fn new(field: &str, redeliver_stream: &str) -> Ordering {
        Ordering {
            field: field.as_bytes().into(),
            redeliver_stream: redeliver_stream.into(),
            redelivered_field: format!("{}{field}", crate::dlq::FIELD_PREFIX)
                .into_bytes()
                .into(),
            state: Mutex::default(),
            work: OnceLock::new(),
        }
    }

    /// Where parked entries go when their turn comes (the intake's work queue).
    pub(crate) fn connect(&self, work: &async_channel::Sender<Batch>) {
        let _ = self.work.set(work.downgrade());
    }

    /// Returns the deliveries that may run now, in order; parks the others
    /// behind their key's holder. An entry without the key field is not
    /// ordered. A delivery of the holder itself (its retry) runs. A holder
    /// this host no longer holds (its retry was claimed by another consumer)
    /// gives its lane to the next entry.
    pub(crate) fn admit(&self, deliveries: Vec<Delivery>, inflight: &InFlight) -> Vec<Delivery> {
        let mut ready = Vec::with_capacity(deliveries.len());
        let mut state = self.lock();
        for delivery in deliveries {
            let Some(value) = self.key_of(&delivery) else {
                ready.push(delivery);
                continue;
            };
            let held: Held = (delivery.key.clone(), delivery.entry.id.clone());
            let state = &mut *state;
            match state.lanes.get_mut(&value) {
                None => {
                    state.holders.insert(held.clone(), value.clone());
                    state.lanes.insert(
                        value,
                        Lane {
                            holder: held,
                            parked: VecDeque::new(),
                        },
                    );
                    ready.push(delivery);
                }
                Some(lane) if lane.holder == held => ready.push(delivery),
                Some(lane) if !inflight.holds(&lane.holder.0, &lane.holder.1) => {
                    state.holders.remove(&lane.holder);
                    lane.parked.push_back(delivery);
                    if let Some(next) = lane.parked.pop_front() {
                        lane.holder = (next.key.clone(), next.entry.id.clone());
                        state.holders.insert(lane.holder.clone(), value);
                        ready.push(next);
                    }
                }
                Some(lane) => lane.parked.push_back(delivery),
            }
        }
        ready
    }

    /// `receipt`'s entry is done on this host: the next entry parked on its
    /// key (if any) is sent to the workers.
    pub(crate) fn finish(&self, receipt: &Receipt) {
        let next = {
            let mut state = self.lock();
            let state = &mut *state;
            let Some(value) = state
                .holders
                .remove(&(receipt.key.clone(), receipt.id.clone()))
            else {
                return;
            };
            let Some(lane) = state.lanes.get_mut(&value) else {
                return;
            };
            match lane.parked.pop_front() {
                Some(next) => {
                    lane.holder = (next.key.clone(), next.entry.id.clone());
                    state.holders.insert(lane.holder.clone(), value);
                    next
                }
                None => {
                    state.lanes.remove(&value);
                    return;
                }
            }
        };
        // No queue any more: shutdown; the entry stays pending in Redis.
        let Some(work) = self.work.get().and_then(async_channel::WeakSender::upgrade) else {
            return;
        };
        // Called from a worker: never wait for room in the queue the workers
        // drain. A closed queue is shutdown: the entry stays pending in Redis.
        if let Err(async_channel::TrySendError::Full(batch)) = work.try_send(vec![next]) {
            tokio::spawn(async move {
                let _ = work.send(batch).await;
            });
        }
    }

    /// Entries parked now (for tests and the gauge-minded).
    #[cfg(test)]
    fn parked(&self) -> usize {
        self.lock().lanes.values().map(|l| l.parked.len()).sum()
    }

    fn key_of(&self, delivery: &Delivery) -> Option<Vec<u8>> {
        let fields = delivery.entry.fields.as_ref()?;
        let name = if *delivery.key == *self.redeliver_stream {
            &self.redelivered_field
        } else {
            &self.field
        };
        fields
            .iter()
            .find(|f| *f.name == **name)
            .map(|f| f.value.clone())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation leaves the maps consistent before it can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::entry::RawField;

    fn entry(id: &str, key: &str) -> Delivery {
        Delivery::new(
            Arc::from("s"),
            crate::streams::Entry {
                id: id.to_owned(),
                fields: Some(vec![RawField {
                    name: b"k".to_vec(),
                    value: key.as_bytes().to_vec(),
                }]),
                attempt: 1,
            },
        )
    }

    fn ids(d: &[Delivery]) -> Vec<&str> {
        d.iter().map(|d| d.entry.id.as_str()).collect()
    }

    #[tokio::test]
    async fn one_entry_per_key_at_a_time_in_order() {
        let ordering = Ordering::new("k", "redeliver:s:p");
        let (tx, rx) = async_channel::unbounded();
        ordering.connect(&tx);
        let inflight = InFlight::default();
        let batch = vec![
            entry("1-0", "a"),
            entry("2-0", "b"),
            entry("3-0", "a"),
            entry("4-0", "a"),
        ];
        let batch = inflight.admit(batch);
        let ready = ordering.admit(batch, &inflight);
        assert_eq!(ids(&ready), ["1-0", "2-0"]);
        assert_eq!(ordering.parked(), 2);
        // A retry of the holder runs; the others still wait.
        let again = ordering.admit(vec![entry("1-0", "a")], &inflight);
        assert_eq!(ids(&again), ["1-0"]);
        ordering.finish(&entry("1-0", "a").receipt());
        assert_eq!(ids(&rx.try_recv().unwrap()), ["3-0"]);
        ordering.finish(&entry("2-0", "b").receipt());
        assert!(rx.try_recv().is_err(), "b had nothing parked");
        ordering.finish(&entry("3-0", "a").receipt());
        assert_eq!(ids(&rx.try_recv().unwrap()), ["4-0"]);
        ordering.finish(&entry("4-0", "a").receipt());
        assert_eq!(ordering.parked(), 0);
        assert!(ordering.lock().lanes.is_empty() && ordering.lock().holders.is_empty());
    }

    #[test]
    fn a_replayed_entry_waits_in_its_original_keys_lane() {
        let ordering = Ordering::new("k", "redeliver:s:p");
        let inflight = InFlight::default();
        let first = inflight.admit(vec![entry("1-0", "a")]);
        assert_eq!(ids(&ordering.admit(first, &inflight)), ["1-0"]);
        let replayed = Delivery::new(
            Arc::from("redeliver:s:p"),
            crate::streams::Entry {
                id: "9-0".to_owned(),
                fields: Some(vec![RawField {
                    name: b"msg.k".to_vec(),
                    value: b"a".to_vec(),
                }]),
                attempt: 1,
            },
        );
        let replayed = inflight.admit(vec![replayed]);
        assert!(
            ordering.admit(replayed, &inflight).is_empty(),
            "the replayed entry of key a ran beside the one holding a"
        );
        assert_eq!(ordering.parked(), 1);
    }

    #[test]
    fn a_holder_no_longer_held_gives_way() {
        let ordering = Ordering::new("k", "redeliver:s:p");
        let inflight = InFlight::default();
        let first = inflight.admit(vec![entry("1-0", "a"), entry("2-0", "a")]);
        assert_eq!(ids(&ordering.admit(first, &inflight)), ["1-0"]);
        inflight.release(&Arc::from("s"), ["1-0"]);
        let third = inflight.admit(vec![entry("3-0", "a")]);
        assert_eq!(ids(&ordering.admit(third, &inflight)), ["2-0"]);
    }
}
