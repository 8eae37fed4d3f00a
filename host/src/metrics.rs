//! Prometheus metrics: one registry per host, handles resolved once per plugin
//! so the hot path only bumps atomics.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::dispatch::TrapKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    plugin: String,
    stream: String,
    kind: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025,
        0.1, 0.5, 1.0, 5.0,
    ])
}

fn fuel_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1_000.0, 4.0, 12,
    ))
}

/// Every metric family of the host.
pub struct Metrics {
    registry: Registry,
    received: Family<PluginLabels, Counter>,
    acked: Family<PluginLabels, Counter>,
    retried: Family<PluginLabels, Counter>,
    dead_lettered: Family<PluginLabels, Counter>,
    failed: Family<FailureLabels, Counter>,
    claimed: Family<PluginLabels, Counter>,
    trimmed: Family<PluginLabels, Counter>,
    groups_recreated: Family<PluginLabels, Counter>,
    handler_seconds: Family<PluginLabels, Histogram, fn() -> Histogram>,
    fuel: Family<PluginLabels, Histogram, fn() -> Histogram>,
    pending: Family<PluginLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered under `streamhost_`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("streamhost");
        let m = Metrics {
            received: Family::default(),
            acked: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            failed: Family::default(),
            claimed: Family::default(),
            trimmed: Family::default(),
            groups_recreated: Family::default(),
            handler_seconds: Family::new_with_constructor(duration_histogram),
            fuel: Family::new_with_constructor(fuel_histogram),
            pending: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "entries_received",
            "Entries handed to the plugin (every delivery)",
            m.received.clone(),
        );
        registry.register(
            "entries_acked",
            "Entries acknowledged after ok",
            m.acked.clone(),
        );
        registry.register(
            "entries_retried",
            "Failed attempts scheduled for another delivery",
            m.retried.clone(),
        );
        registry.register(
            "entries_dead_lettered",
            "Entries moved to the dead-letter stream",
            m.dead_lettered.clone(),
        );
        registry.register("entries_failed", "Failed invocations by kind (rejected, retry, fuel, timeout, memory, stack-overflow, trap)", m.failed.clone());
        registry.register(
            "entries_claimed",
            "Entries claimed from other (presumed dead) consumers",
            m.claimed.clone(),
        );
        registry.register(
            "entries_trimmed",
            "Pending entries found deleted or trimmed; acked without handling",
            m.trimmed.clone(),
        );
        registry.register(
            "groups_recreated",
            "Consumer groups found missing and recreated",
            m.groups_recreated.clone(),
        );
        registry.register(
            "handler_duration_seconds",
            "Wall-clock time of one handler invocation",
            m.handler_seconds.clone(),
        );
        registry.register(
            "handler_fuel",
            "Fuel consumed by one handler invocation",
            m.fuel.clone(),
        );
        registry.register(
            "pending_entries",
            "Entries pending in the plugin's consumer group",
            m.pending.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Handles for one plugin's hot path.
    pub fn plugin(&self, plugin: &str, stream: &str) -> PluginMetrics {
        let l = PluginLabels {
            plugin: plugin.to_owned(),
            stream: stream.to_owned(),
        };
        let failed = |kind: &str| {
            self.failed
                .get_or_create(&FailureLabels {
                    plugin: plugin.to_owned(),
                    stream: stream.to_owned(),
                    kind: kind.to_owned(),
                })
                .clone()
        };
        PluginMetrics {
            received: self.received.get_or_create(&l).clone(),
            acked: self.acked.get_or_create(&l).clone(),
            retried: self.retried.get_or_create(&l).clone(),
            dead_lettered: self.dead_lettered.get_or_create(&l).clone(),
            claimed: self.claimed.get_or_create(&l).clone(),
            trimmed: self.trimmed.get_or_create(&l).clone(),
            groups_recreated: self.groups_recreated.get_or_create(&l).clone(),
            handler_seconds: self.handler_seconds.get_or_create(&l).clone(),
            fuel: self.fuel.get_or_create(&l).clone(),
            pending: self.pending.get_or_create(&l).clone(),
            rejected: failed("rejected"),
            retry: failed("retry"),
            traps: [
                failed(TrapKind::Fuel.as_str()),
                failed(TrapKind::Timeout.as_str()),
                failed(TrapKind::Memory.as_str()),
                failed(TrapKind::StackOverflow.as_str()),
                failed(TrapKind::Panic.as_str()),
            ],
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One plugin's metric handles (cheap clones of shared atomics).
#[derive(Clone)]
pub struct PluginMetrics {
    pub received: Counter,
    pub acked: Counter,
    pub retried: Counter,
    pub dead_lettered: Counter,
    pub claimed: Counter,
    pub trimmed: Counter,
    pub groups_recreated: Counter,
    pub handler_seconds: Histogram,
    pub fuel: Histogram,
    pub pending: Gauge,
    pub rejected: Counter,
    pub retry: Counter,
    traps: [Counter; 5],
}

impl PluginMetrics {
    /// The failure counter for a trap kind.
    pub fn trap(&self, kind: TrapKind) -> &Counter {
        &self.traps[match kind {
            TrapKind::Fuel => 0,
            TrapKind::Timeout => 1,
            TrapKind::Memory => 2,
            TrapKind::StackOverflow => 3,
            TrapKind::Panic => 4,
        }]
    }
}

/// Shared metrics handle.
pub type SharedMetrics = Arc<Metrics>;
