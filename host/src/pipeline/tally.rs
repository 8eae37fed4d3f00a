//! A worker's tally of what its deliveries add to the plugin's metrics —
//! received, handler time and fuel, end-to-end latency, each version's
//! settled attempts — merged into the shared metrics at each ack flush and
//! at the end of each batch, so a handled entry touches no shared counter
//! or lock of its own (BENCHMARKS.md, "CPU per entry"). [`settle::record`]
//! decides what is counted; the tally only defers the adding. (The
//! canary's judgement is not deferred: settle feeds it each attempt.)
//!
//! [`settle::record`]: super::settle::record

use std::sync::Arc;

use super::PluginContext;
use crate::histogram::LocalHistogram;

/// Metric updates held by one worker until [`Tally::flush`].
pub(crate) struct Tally {
    received: u64,
    handler_seconds: LocalHistogram,
    fuel: LocalHistogram,
    end_to_end: LocalHistogram,
    /// Stream-id times (Unix ms) of entries settled as handled since the
    /// last flush: their latency ends at the flush, which sends their acks.
    handled_at: Vec<u64>,
    fuel_spent: u64,
    seconds_spent: f64,
    /// Settled attempts per version (`streamhost_version_entries_total`):
    /// (digest, ok, failed).
    versions: Vec<(Arc<str>, u64, u64)>,
}

impl Tally {
    /// An empty tally for `ctx`'s metrics.
    pub(crate) fn new(ctx: &PluginContext) -> Tally {
        let m = &ctx.metrics;
        Tally {
            received: 0,
            handler_seconds: m.handler_seconds.local(),
            fuel: m.fuel.local(),
            end_to_end: m.end_to_end.local(),
            handled_at: Vec::new(),
            fuel_spent: 0,
            seconds_spent: 0.0,
            versions: Vec::new(),
        }
    }

    /// One delivery handed to the handler.
    pub(crate) fn received(&mut self) {
        self.received += 1;
    }

    /// One handler call's wall-clock seconds and, when metered, its fuel.
    pub(crate) fn invoked(&mut self, seconds: f64, fuel: Option<u64>) {
        self.handler_seconds.observe(seconds);
        if let Some(fuel) = fuel {
            self.fuel.observe(fuel as f64);
        }
    }

    /// Fuel and time charged to the plugin.
    pub(crate) fn charge(&mut self, fuel: u64, seconds: f64) {
        self.fuel_spent += fuel;
        self.seconds_spent += seconds;
    }

    /// An entry handled: its end-to-end latency runs from the time in its
    /// id to the next flush.
    pub(crate) fn handled(&mut self, id: &str) {
        if let Some(ms) = crate::inspect::id_time_ms(id) {
            self.handled_at.push(ms);
        }
    }

    /// One settled attempt of `version`.
    pub(crate) fn attempt(&mut self, version: &Arc<str>, failed: bool) {
        let (ok, failed) = (u64::from(!failed), u64::from(failed));
        let known = self
            .versions
            .iter_mut()
            .find(|(v, ..)| Arc::ptr_eq(v, version) || **v == **version);
        match known {
            Some((_, o, f)) => {
                *o += ok;
                *f += failed;
            }
            None => self.versions.push((version.clone(), ok, failed)),
        }
    }

    /// Adds everything held here to the shared metrics, and starts over.
    pub(crate) fn flush(&mut self, ctx: &PluginContext) {
        let m = &ctx.metrics;
        if self.received > 0 {
            m.received.inc_by(std::mem::take(&mut self.received));
        }
        self.handler_seconds.flush();
        self.fuel.flush();
        if !self.handled_at.is_empty() {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            for at in self.handled_at.drain(..) {
                self.end_to_end
                    .observe(now_ms.saturating_sub(at) as f64 / 1000.0);
            }
            self.end_to_end.flush();
        }
        if self.fuel_spent > 0 || self.seconds_spent > 0.0 {
            m.release.charge(
                std::mem::take(&mut self.fuel_spent),
                std::mem::take(&mut self.seconds_spent),
            );
        }
        for (version, ok, failed) in &mut self.versions {
            if *ok + *failed == 0 {
                continue;
            }
            let (ok, failed) = (std::mem::take(ok), std::mem::take(failed));
            m.release.version_entries(version, ok, failed);
        }
        // Past the current version and a canary's candidate, the list holds
        // versions swapped away from: all counted now, so let them go.
        if self.versions.len() > 2 {
            self.versions.clear();
        }
    }
}
