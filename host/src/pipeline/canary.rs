//! A canary on this host: which entries go to the candidate version (a
//! seeded hash of the entry's routing key against the share), and each
//! version's attempts and failures while it runs, which decide an automatic
//! rollback. The Redis side (following `deploy --canary`, recording a
//! rollback for every host) is `consumer/canary.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

use crate::config::{CanaryConfig, PluginConfig};
use crate::plugin::{Field, LoadedPlugin, PluginInstance};

/// A candidate this host routes a share of entries to.
pub(crate) struct Candidate {
    /// The loaded candidate.
    pub(crate) plugin: Arc<LoadedPlugin>,
    /// Its share in parts per million.
    pub(crate) share_ppm: u32,
    /// The deploy's seed, mixed into the routing hash.
    pub(crate) seed: String,
    /// Set once this host stops routing to it (rolled back, ended).
    stopped: AtomicBool,
    stable: Tally,
    candidate: Tally,
}

/// Attempts and failed attempts of one version during the canary.
#[derive(Default)]
struct Tally {
    handled: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn add(&self, failed: bool) -> (u64, u64) {
        let handled = self.handled.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = if failed {
            self.failed.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.failed.load(Ordering::Relaxed)
        };
        (handled, failed)
    }
    fn get(&self) -> (u64, u64) {
        (
            self.handled.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

impl Candidate {
    pub(crate) fn new(plugin: Arc<LoadedPlugin>, share_ppm: u32, seed: &str) -> Candidate {
        Candidate {
            plugin,
            share_ppm,
            seed: seed.to_owned(),
            stopped: AtomicBool::new(false),
            stable: Tally::default(),
            candidate: Tally::default(),
        }
    }

    fn takes(&self, key: &[u8]) -> bool {
        crate::release::takes_candidate(&self.seed, self.share_ppm, key)
    }
}

/// A decision to roll the candidate back, for the Redis side to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rollback {
    /// The candidate's digest.
    pub(crate) digest: Arc<str>,
    /// The figures that decided it.
    pub(crate) why: String,
}

/// This host's canary of one plugin.
#[derive(Default)]
pub(crate) struct CanaryRoute {
    candidate: ArcSwapOption<Candidate>,
    /// Whether `candidate` is set: read first, as a load of `candidate`
    /// costs more on every entry than this flag (BENCHMARKS.md, "CPU per entry").
    routing: AtomicBool,
    /// A rollback decided here, not yet recorded in Redis.
    decided: std::sync::Mutex<Option<Rollback>>,
    /// Woken when a rollback is decided.
    pub(crate) wake: tokio::sync::Notify,
    /// The seed of the canary deploy this host last acted on (routed to,
    /// refused, or saw end), so each deploy is loaded once.
    followed: std::sync::Mutex<Option<String>>,
}

impl CanaryRoute {
    /// Routes a share of entries to `candidate` from now on (`None`: none).
    pub(crate) fn set(&self, candidate: Option<Candidate>) {
        self.routing.store(candidate.is_some(), Ordering::Relaxed);
        self.candidate.store(candidate.map(Arc::new));
    }

    /// Stops routing to any candidate; returns whether there was one.
    pub(crate) fn take_candidate(&self) -> bool {
        self.routing.store(false, Ordering::Relaxed);
        self.candidate.swap(None).is_some()
    }

    /// The seed of the canary deploy this host last acted on.
    pub(crate) fn followed(&self) -> Option<String> {
        self.followed.lock().ok().and_then(|f| f.clone())
    }

    /// Records that this host acted on the canary deploy with `seed`.
    pub(crate) fn note_followed(&self, seed: &str) {
        if let Ok(mut f) = self.followed.lock() {
            *f = Some(seed.to_owned());
        }
    }

    /// Puts back a decision whose recording failed, to try again.
    pub(crate) fn restore_decision(&self, rollback: Rollback) {
        if let Ok(mut d) = self.decided.lock() {
            d.get_or_insert(rollback);
        }
    }

    /// The candidate, when an entry with routing key `key` is in its share
    /// (`None`: it runs on `current`).
    pub(crate) fn route(&self, current: &LoadedPlugin, key: &[u8]) -> Option<Arc<LoadedPlugin>> {
        if !self.routing.load(Ordering::Relaxed) {
            return None;
        }
        let guard = self.candidate.load();
        let c = guard.as_ref()?;
        (!c.stopped.load(Ordering::Relaxed) && c.plugin.digest != current.digest && c.takes(key))
            .then(|| c.plugin.clone())
    }

    /// Counts one settled attempt of `version`; when the candidate now fails
    /// too often (see [`CanaryConfig`]), stops routing to it here and leaves
    /// the decision for [`CanaryRoute::take_decision`].
    pub(crate) fn record(&self, version: &str, failed: bool, policy: &CanaryConfig) {
        if !self.routing.load(Ordering::Relaxed) {
            return;
        }
        let guard = self.candidate.load();
        let Some(c) = guard.as_ref() else {
            return;
        };
        if *c.plugin.digest != *version {
            c.stable.add(failed);
            return;
        }
        let (handled, failures) = c.candidate.add(failed);
        if handled < policy.min_entries || c.stopped.load(Ordering::Relaxed) {
            return;
        }
        let (stable_handled, stable_failures) = c.stable.get();
        let rate = |f: u64, h: u64| if h == 0 { 0.0 } else { f as f64 / h as f64 };
        let (candidate_rate, stable_rate) = (
            rate(failures, handled),
            rate(stable_failures, stable_handled),
        );
        if candidate_rate <= stable_rate + policy.failure_margin
            || c.stopped.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let why = format!(
            "candidate failed {failures} of {handled} attempts ({:.1}%), stable {stable_failures} of {stable_handled} ({:.1}%); margin {:.1} points",
            candidate_rate * 100.0,
            stable_rate * 100.0,
            policy.failure_margin * 100.0
        );
        if let Ok(mut d) = self.decided.lock() {
            *d = Some(Rollback {
                digest: c.plugin.digest.clone(),
                why,
            });
        }
        self.wake.notify_one();
    }

    /// A rollback decided on this host and not yet recorded.
    pub(crate) fn take_decision(&self) -> Option<Rollback> {
        self.decided.lock().ok().and_then(|mut d| d.take())
    }
}

/// A worker's instances: of the current version and, during a canary, of
/// the candidate, so routing entries between the two never re-instantiates.
#[derive(Default)]
pub(crate) struct Instances {
    slots: [Option<PluginInstance>; 2],
    /// The slot used last (kept when a third version needs one).
    last: usize,
}

impl Instances {
    /// The slot for `digest`: the one holding that version, else an empty
    /// one, else the one not used last, emptied (its instance, of another
    /// version, is dropped).
    pub(crate) fn for_version(&mut self, digest: &Arc<str>) -> &mut Option<PluginInstance> {
        let holds = |s: &Option<PluginInstance>| {
            s.as_ref()
                .is_some_and(|i| Arc::ptr_eq(i.digest(), digest) || **i.digest() == **digest)
        };
        let held = (0..2).find(|&i| holds(&self.slots[i]));
        let index = held.unwrap_or_else(|| {
            (0..2)
                .find(|&i| self.slots[i].is_none())
                .unwrap_or(1 - self.last)
        });
        self.last = index;
        let slot = &mut self.slots[index];
        if held.is_none() {
            *slot = None;
        }
        slot
    }
}

/// The field whose value routes an entry instead of its id: the plugin's
/// ordering key, so one key never flips between versions.
fn ordering_field(config: &PluginConfig) -> Option<&str> {
    config.ordering.as_ref().map(|o| o.key.as_str())
}

/// The bytes an entry is routed by: its ordering key's value when the
/// plugin has one and the entry carries it, else its (original) id.
pub(crate) fn routing_key<'a>(config: &PluginConfig, id: &'a str, fields: &'a [Field]) -> &'a [u8] {
    ordering_field(config)
        .and_then(|name| fields.iter().find(|f| f.name == name))
        .map_or(id.as_bytes(), |f| f.value.as_slice())
}
