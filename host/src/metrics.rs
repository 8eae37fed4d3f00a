//! Prometheus metrics: one registry per host, handles resolved once per plugin
//! so the hot path only bumps atomics. Families are named and unit-tagged by
//! Prometheus conventions (`_total` counters, `# UNIT` on `_seconds` and
//! `_bytes`); `process_*` comes from [`crate::process_stats`] without the
//! `streamhost_` prefix, as every exporter names it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use crate::histogram::Histogram;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::outcome::{FailureKind, TrapKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    plugin: String,
    stream: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoundTripLabels {
    plugin: String,
    stream: String,
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    wit: String,
}

/// The operations `streamhost_redis_errors_total` counts, by its `op` label.
pub(crate) const REDIS_OPS: [&str; 7] = [
    "read",
    "ack",
    "claim",
    "reclaim",
    "dead_letter",
    "commit",
    "inspect",
];

/// The current WIT package this host implements (`wit/v0.2/plugin.wit`;
/// it runs 0.1.0 components too: `plugin::WIT_PACKAGES`).
pub(crate) const WIT_VERSION: &str = "streamhost:plugin@0.2.0";

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

/// From a millisecond to an hour: entries can wait in a stream for long.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        900.0, 3600.0,
    ])
}

/// Redis round trips: from tens of microseconds to a timed-out command.
fn round_trip_histogram() -> Histogram {
    Histogram::new([
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
        1.0, 5.0,
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
    postponed: Family<PluginLabels, Counter>,
    claimed: Family<PluginLabels, Counter>,
    trimmed: Family<PluginLabels, Counter>,
    groups_recreated: Family<PluginLabels, Counter>,
    resubscribed: Family<PluginLabels, Counter>,
    subscription_gap: Family<PluginLabels, Counter<f64, AtomicU64>>,
    handler_seconds: Family<PluginLabels, Histogram, fn() -> Histogram>,
    fuel: Family<PluginLabels, Histogram, fn() -> Histogram>,
    pending: Family<PluginLabels, Gauge>,
    /// Families refreshed from Redis and retention's (see [`OpsMetrics`]).
    ops: OpsMetrics,
    effect_conflicts: Family<PluginLabels, Counter>,
    swaps: Family<PluginLabels, Counter>,
    swap_refusals: Family<PluginLabels, Counter>,
    /// Families about the host's own health and work in progress.
    health: HealthMetrics,
    /// Families of releases (versions, canaries).
    release: crate::release_metrics::ReleaseMetrics,
}

/// Entry latency, in-progress gauges and the host's view of Redis.
struct HealthMetrics {
    end_to_end: Family<PluginLabels, Histogram, fn() -> Histogram>,
    dead_lettered: Family<ReasonLabels, Counter>,
    build_info: Family<BuildLabels, Gauge>,
    redis_up: Gauge,
    redis_errors: Family<OpLabels, Counter>,
    round_trip: Family<RoundTripLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<PluginLabels, Gauge>,
    workers_busy: Family<PluginLabels, Gauge>,
    workers: Family<PluginLabels, Gauge>,
    retries_waiting: Family<PluginLabels, Gauge>,
    paused: Family<PluginLabels, Gauge>,
    instances_recycled: Family<PluginLabels, Counter>,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        HealthMetrics {
            end_to_end: Family::new_with_constructor(latency_histogram),
            dead_lettered: Family::default(),
            build_info: Family::default(),
            redis_up: Gauge::default(),
            redis_errors: Family::default(),
            round_trip: Family::new_with_constructor(round_trip_histogram),
            in_flight: Family::default(),
            workers_busy: Family::default(),
            workers: Family::default(),
            retries_waiting: Family::default(),
            paused: Family::default(),
            instances_recycled: Family::default(),
        }
    }
}

impl HealthMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "end_to_end_latency",
            "Time from an entry's id (when Redis added it) to its ack, by the host's clock",
            Unit::Seconds,
            self.end_to_end.clone(),
        );
        registry.register(
            "dead_lettered",
            "Entries moved to a dead-letter stream, by reason (rejected, attempts-exhausted, trap:<kind>)",
            self.dead_lettered.clone(),
        );
        registry.register(
            "build_info",
            "Always 1; labels name the host's version and the WIT package it implements",
            self.build_info.clone(),
        );
        registry.register(
            "redis_up",
            "1 while the host's last query to Redis (gauge refresh or /readyz ping) succeeded, else 0",
            self.redis_up.clone(),
        );
        registry.register(
            "redis_errors",
            "Redis commands that failed, by operation (read, ack, claim, reclaim, dead_letter, commit, inspect)",
            self.redis_errors.clone(),
        );
        registry.register_with_unit(
            "redis_round_trip",
            "Round trip of XREADGROUP replies that carried entries (op=read) and of XACK (op=ack)",
            Unit::Seconds,
            self.round_trip.clone(),
        );
        registry.register(
            "entries_in_flight",
            "Entries this host holds: queued, being handled, awaiting ack or a retry",
            self.in_flight.clone(),
        );
        registry.register(
            "workers_busy",
            "Workers with entries in hand (a batch being handled) right now",
            self.workers_busy.clone(),
        );
        registry.register(
            "workers",
            "Workers of the plugin on this host (its concurrency)",
            self.workers.clone(),
        );
        registry.register(
            "retries_waiting",
            "Failed entries waiting on this host for their next attempt",
            self.retries_waiting.clone(),
        );
        registry.register(
            "plugin_paused",
            "1 while the plugin is paused (no new reads on any host)",
            self.paused.clone(),
        );
        registry.register(
            "instances_recycled",
            "Instances replaced after a call because their memory passed limits.recycle_memory_percent of limits.memory_mib",
            self.instances_recycled.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered under `streamhost_`, plus `process_*`.
    pub fn new() -> Metrics {
        let mut root = Registry::default();
        root.register_collector(Box::new(crate::process_stats::ProcessCollector));
        let registry = root.sub_registry_with_prefix("streamhost");
        let m = Metrics {
            received: Family::default(),
            acked: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            failed: Family::default(),
            postponed: Family::default(),
            claimed: Family::default(),
            trimmed: Family::default(),
            groups_recreated: Family::default(),
            resubscribed: Family::default(),
            subscription_gap: Family::default(),
            handler_seconds: Family::new_with_constructor(duration_histogram),
            fuel: Family::new_with_constructor(fuel_histogram),
            pending: Family::default(),
            ops: OpsMetrics::default(),
            effect_conflicts: Family::default(),
            swaps: Family::default(),
            swap_refusals: Family::default(),
            health: HealthMetrics::default(),
            release: Default::default(),
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
        registry.register("entries_failed", "Failed handler attempts by kind (rejected, retry, fuel, timeout, memory, stack-overflow, trap, instantiate, commit, no-outcome); their sum is entries_retried plus the entries dead-lettered", m.failed.clone());
        registry.register(
            "entries_postponed",
            "Deliveries settled again later because Redis refused or could not take the commit (not handler attempts)",
            m.postponed.clone(),
        );
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
            "pubsub_resubscribed",
            "Pub/Sub subscriptions made again after their connection was lost",
            m.resubscribed.clone(),
        );
        registry.register_with_unit(
            "pubsub_gap",
            "Time a Pub/Sub plugin was not subscribed after losing its connection: messages published then are gone",
            prometheus_client::registry::Unit::Seconds,
            m.subscription_gap.clone(),
        );
        registry.register_with_unit(
            "handler_duration",
            "Wall-clock time of one handler invocation",
            Unit::Seconds,
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
        registry.register(
            "effect_conflicts",
            "Handler re-runs because state it read changed before its commit",
            m.effect_conflicts.clone(),
        );
        m.ops.register(registry);
        registry.register(
            "hot_swaps",
            "Versions swapped in without a restart (deploy, rollback, --watch)",
            m.swaps.clone(),
        );
        registry.register(
            "hot_swap_refusals",
            "Candidate versions refused (do not compile, wrong world, trap at instantiation, too large)",
            m.swap_refusals.clone(),
        );
        m.health.register(registry);
        m.release.register(registry);
        // Known label values start at 0, so dashboards and alerts see the
        // series before the first error (Prometheus's advice for counters).
        for op in REDIS_OPS {
            let _ = m
                .health
                .redis_errors
                .get_or_create(&OpLabels { op: op.to_owned() });
        }
        m.health
            .build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                wit: WIT_VERSION.to_owned(),
            })
            .set(1);
        Metrics {
            registry: root,
            ..m
        }
    }

    /// 1 while Redis answers this host, 0 after a failed query.
    pub fn redis_up(&self) -> &Gauge {
        &self.health.redis_up
    }

    /// Counts one failed Redis command of operation `op`.
    pub fn redis_error(&self, op: &str) {
        self.health
            .redis_errors
            .get_or_create(&OpLabels { op: op.to_owned() })
            .inc();
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
        let reasons = ["rejected".to_owned(), "attempts-exhausted".to_owned()]
            .into_iter()
            .chain(TrapKind::ALL.iter().map(|k| format!("trap:{}", k.as_str())));
        for reason in reasons {
            let _ = self.health.dead_lettered.get_or_create(&ReasonLabels {
                plugin: plugin.to_owned(),
                stream: stream.to_owned(),
                reason,
            });
        }
        let round_trip = |op: &str| {
            self.health
                .round_trip
                .get_or_create(&RoundTripLabels {
                    plugin: plugin.to_owned(),
                    stream: stream.to_owned(),
                    op: op.to_owned(),
                })
                .clone()
        };
        PluginMetrics {
            end_to_end: self.health.end_to_end.get_or_create(&l).clone(),
            in_flight: self.health.in_flight.get_or_create(&l).clone(),
            workers_busy: self.health.workers_busy.get_or_create(&l).clone(),
            workers: self.health.workers.get_or_create(&l).clone(),
            retries_waiting: self.health.retries_waiting.get_or_create(&l).clone(),
            paused: self.health.paused.get_or_create(&l).clone(),
            instances_recycled: self.health.instances_recycled.get_or_create(&l).clone(),
            read_round_trip: round_trip("read"),
            ack_round_trip: round_trip("ack"),
            dead_lettered_by_reason: self.health.dead_lettered.clone(),
            redis_errors: self.health.redis_errors.clone(),
            release: self.release.plugin(plugin, stream),
            labels: l.clone(),
            received: self.received.get_or_create(&l).clone(),
            acked: self.acked.get_or_create(&l).clone(),
            retried: self.retried.get_or_create(&l).clone(),
            dead_lettered: self.dead_lettered.get_or_create(&l).clone(),
            claimed: self.claimed.get_or_create(&l).clone(),
            trimmed: self.trimmed.get_or_create(&l).clone(),
            groups_recreated: self.groups_recreated.get_or_create(&l).clone(),
            resubscribed: self.resubscribed.get_or_create(&l).clone(),
            subscription_gap: self.subscription_gap.get_or_create(&l).clone(),
            handler_seconds: self.handler_seconds.get_or_create(&l).clone(),
            fuel: self.fuel.get_or_create(&l).clone(),
            pending: self.pending.get_or_create(&l).clone(),
            effect_conflicts: self.effect_conflicts.get_or_create(&l).clone(),
            swaps: self.swaps.get_or_create(&l).clone(),
            swap_refusals: self.swap_refusals.get_or_create(&l).clone(),
            postponed: self.postponed.get_or_create(&l).clone(),
            rejected: failed("rejected"),
            retry: failed("retry"),
            instantiate: failed("instantiate"),
            commit: failed("commit"),
            no_outcome: failed("no-outcome"),
            undeliverable: failed("undeliverable"),
            traps: [
                failed(TrapKind::Fuel.as_str()),
                failed(TrapKind::Timeout.as_str()),
                failed(TrapKind::Memory.as_str()),
                failed(TrapKind::StackOverflow.as_str()),
                failed(TrapKind::Panic.as_str()),
            ],
        }
    }

    /// The OpenMetrics text exposition of every metric.
    pub fn encode(&self) -> String {
        self.encode_as(crate::exposition::Format::OpenMetrics)
    }

    /// The exposition of every metric in `format`.
    pub fn encode_as(&self, format: crate::exposition::Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = match format {
            crate::exposition::Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
            crate::exposition::Format::Prometheus => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
        };
        out
    }
}

/// One plugin's metric handles (cheap clones of shared atomics).
#[derive(Clone)]
pub struct PluginMetrics {
    /// Entry id time to ack.
    pub(crate) end_to_end: Histogram,
    /// Entries this host holds.
    pub in_flight: Gauge,
    /// Workers with entries in hand (set per batch, not per call).
    pub workers_busy: Gauge,
    /// Workers in all.
    pub workers: Gauge,
    /// Entries waiting for a retry on this host.
    pub retries_waiting: Gauge,
    /// 1 while paused.
    pub paused: Gauge,
    /// Instances replaced because their memory neared the limit.
    pub instances_recycled: Counter,
    /// XREADGROUP round trips that returned entries.
    pub(crate) read_round_trip: Histogram,
    /// XACK round trips.
    pub(crate) ack_round_trip: Histogram,
    dead_lettered_by_reason: Family<ReasonLabels, Counter>,
    redis_errors: Family<OpLabels, Counter>,
    labels: PluginLabels,
    /// Entries handed to the plugin (first deliveries and re-deliveries).
    pub received: Counter,
    /// Entries acknowledged after a successful handler call.
    pub acked: Counter,
    /// Failed attempts scheduled for another delivery.
    pub retried: Counter,
    /// Entries moved to the dead-letter stream.
    pub dead_lettered: Counter,
    /// Entries claimed from other consumers.
    pub claimed: Counter,
    /// Pending entries found deleted or trimmed from the stream.
    pub trimmed: Counter,
    /// Times the consumer group was found gone and created again.
    pub groups_recreated: Counter,
    /// Pub/Sub resubscriptions after a lost connection.
    pub resubscribed: Counter,
    /// Seconds a Pub/Sub plugin was not subscribed after losing its connection.
    pub subscription_gap: Counter<f64, AtomicU64>,
    /// Wall-clock seconds per handler call.
    pub(crate) handler_seconds: Histogram,
    /// Fuel consumed per handler call.
    pub(crate) fuel: Histogram,
    /// Entries pending in the plugin's consumer group (`XPENDING`).
    pub pending: Gauge,
    /// Handler re-runs because state it read changed before its commit.
    pub effect_conflicts: Counter,
    /// Hot swaps to a new component version.
    pub swaps: Counter,
    /// Deployed versions refused (they failed to load or check).
    pub swap_refusals: Counter,
    /// Deliveries whose settling Redis refused or could not take (not attempts).
    pub postponed: Counter,
    /// Handler calls that rejected their entry.
    pub rejected: Counter,
    /// Handler calls that asked for a retry.
    pub retry: Counter,
    /// Attempts that found no instance (pool exhausted, instantiation failed).
    pub instantiate: Counter,
    /// Commits Redis refused for good (a key of the wrong type).
    pub commit: Counter,
    /// Entries dead-lettered after deliveries that ended without an outcome.
    pub no_outcome: Counter,
    /// Entries dead-lettered unhandled because WIT 0.1 cannot carry them
    /// (a field name that is not UTF-8).
    pub undeliverable: Counter,
    traps: [Counter; 5],
    /// Per-version and canary counters.
    pub release: crate::release_metrics::PluginReleaseMetrics,
}

impl PluginMetrics {
    /// Counts one dead letter under its reason label (`rejected`, `trap:fuel`, ...).
    pub fn dead_lettered_for(&self, reason: &str) {
        self.dead_lettered.inc();
        self.dead_lettered_by_reason
            .get_or_create(&ReasonLabels {
                plugin: self.labels.plugin.clone(),
                stream: self.labels.stream.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one failed Redis command of operation `op`.
    pub fn redis_error(&self, op: &str) {
        self.redis_errors
            .get_or_create(&OpLabels { op: op.to_owned() })
            .inc();
    }

    /// The `entries_failed` counter of a failure kind.
    pub fn failed(&self, kind: FailureKind) -> &Counter {
        match kind {
            FailureKind::Retry => &self.retry,
            FailureKind::Rejected => &self.rejected,
            FailureKind::Trap(kind) => self.trap(kind),
            FailureKind::Instantiate => &self.instantiate,
            FailureKind::Commit => &self.commit,
            FailureKind::NoOutcome => &self.no_outcome,
            FailureKind::Undeliverable => &self.undeliverable,
        }
    }

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    plugin: String,
    stream: String,
    group: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

/// Gauges that mirror Redis's view of each group (refreshed by a periodic
/// task, never on the scrape path), the running versions, and retention.
#[derive(Default)]
struct OpsMetrics {
    plugin_info: Family<InfoLabels, Gauge>,
    /// The info labels currently set per plugin, so a new version replaces
    /// the old series instead of adding one.
    versions: Mutex<HashMap<String, InfoLabels>>,
    lag: Family<PluginLabels, Gauge>,
    oldest_pending_age: Family<PluginLabels, Gauge<f64, AtomicU64>>,
    dlq_entries: Family<PluginLabels, Gauge>,
    retention_trimmed: Family<StreamLabels, Counter>,
    retention_held_back: Family<StreamLabels, Gauge>,
}

impl OpsMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "plugin_info",
            "Always 1; labels name the running component version (sha256 digest) of each plugin",
            self.plugin_info.clone(),
        );
        registry.register(
            "group_lag",
            "Entries in the stream not yet delivered to the plugin's group (XINFO GROUPS lag; absent while Redis cannot tell)",
            self.lag.clone(),
        );
        registry.register_with_unit(
            "oldest_pending_age",
            "Age by entry id time of the oldest entry pending in the plugin's group (0 when none)",
            Unit::Seconds,
            self.oldest_pending_age.clone(),
        );
        registry.register(
            "dlq_entries",
            "Entries in the plugin's dead-letter stream (XLEN)",
            self.dlq_entries.clone(),
        );
        registry.register(
            "retention_trimmed_entries",
            "Entries deleted from the stream by a [[retention]] rule",
            self.retention_trimmed.clone(),
        );
        registry.register(
            "retention_held_back",
            "1 while a [[retention]] rule trims less than configured because a group still needs older entries (pending or unread)",
            self.retention_held_back.clone(),
        );
    }
}

impl Metrics {
    /// Records the component version a plugin runs, replacing the previous one.
    pub fn set_plugin_version(&self, plugin: &str, stream: &str, group: &str, version: &str) {
        let labels = InfoLabels {
            plugin: plugin.to_owned(),
            stream: stream.to_owned(),
            group: group.to_owned(),
            version: version.to_owned(),
        };
        let mut versions = self
            .ops
            .versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = versions.insert(plugin.to_owned(), labels.clone()) {
            self.ops.plugin_info.remove(&old);
        }
        self.ops.plugin_info.get_or_create(&labels).set(1);
    }

    /// Gauges of one plugin's group, for the task that refreshes them from Redis.
    pub fn group_gauges(&self, plugin: &str, stream: &str) -> GroupGauges {
        let labels = PluginLabels {
            plugin: plugin.to_owned(),
            stream: stream.to_owned(),
        };
        GroupGauges {
            oldest_pending_age_seconds: self.ops.oldest_pending_age.get_or_create(&labels).clone(),
            dlq_entries: self.ops.dlq_entries.get_or_create(&labels).clone(),
            redis_up: self.health.redis_up.clone(),
            redis_errors: self.health.redis_errors.clone(),
            lag: self.ops.lag.clone(),
            labels,
        }
    }

    /// Handles of one retention rule.
    pub fn retention(&self, stream: &str) -> RetentionMetrics {
        let labels = StreamLabels {
            stream: stream.to_owned(),
        };
        RetentionMetrics {
            trimmed: self.ops.retention_trimmed.get_or_create(&labels).clone(),
            held_back: self.ops.retention_held_back.get_or_create(&labels).clone(),
        }
    }
}

/// One plugin's Redis-derived gauges.
#[derive(Clone)]
pub struct GroupGauges {
    /// Seconds since the oldest pending entry was added (by its id time).
    pub oldest_pending_age_seconds: Gauge<f64, AtomicU64>,
    /// Length of the dead-letter stream.
    pub dlq_entries: Gauge,
    /// The host-wide `redis_up`.
    pub redis_up: Gauge,
    redis_errors: Family<OpLabels, Counter>,
    lag: Family<PluginLabels, Gauge>,
    labels: PluginLabels,
}

impl GroupGauges {
    /// Records whether a refresh reached Redis.
    pub fn set_redis_reached(&self, reached: bool) {
        self.redis_up.set(i64::from(reached));
        if !reached {
            self.redis_errors
                .get_or_create(&OpLabels {
                    op: "inspect".to_owned(),
                })
                .inc();
        }
    }

    /// Sets the group's lag, or removes the series when Redis cannot tell
    /// (it reports nil after deletions or trims it cannot account for).
    pub fn set_lag(&self, lag: Option<u64>) {
        match lag {
            Some(n) => {
                self.lag
                    .get_or_create(&self.labels)
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            None => {
                self.lag.remove(&self.labels);
            }
        }
    }
}

/// One retention rule's handles.
#[derive(Clone)]
pub struct RetentionMetrics {
    /// Entries deleted by the rule.
    pub trimmed: Counter,
    /// 1 while a group holds the rule back.
    pub held_back: Gauge,
}
