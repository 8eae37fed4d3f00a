//! Metric families of releases and CPU use: entries per handler version
//! (`version` label, the component digest), canary rollbacks, the fuel and
//! handling time each plugin (and tenant) consumed, circuit-breaker trips.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// Most tenant label values per plugin; later tenants count as `other`, so
/// producers cannot grow the exposition without bound.
const MAX_TENANTS: usize = 256;
/// Longest tenant label value kept (bytes of its escaped form).
const MAX_TENANT_LEN: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    plugin: String,
    stream: String,
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    plugin: String,
    stream: String,
    version: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    stream: String,
}

/// The families, registered once per host.
#[derive(Default)]
pub(crate) struct ReleaseMetrics {
    version_entries: Family<VersionLabels, Counter>,
    canary_rollbacks: Family<PluginLabels, Counter>,
    canary_share: Family<PluginLabels, Gauge<f64, AtomicU64>>,
    fuel: Family<PluginLabels, Counter>,
    handle_seconds: Family<PluginLabels, Counter<f64, AtomicU64>>,
    tenant_fuel: Family<TenantLabels, Counter>,
    tenant_seconds: Family<TenantLabels, Counter<f64, AtomicU64>>,
    breaker_trips: Family<PluginLabels, Counter>,
    cpu_throttled: Family<PluginLabels, Counter<f64, AtomicU64>>,
    shadow_compared: Family<PluginLabels, Counter>,
    shadow_differ: Family<PluginLabels, Counter>,
    shadow_dropped: Family<PluginLabels, Counter>,
    shadow_running: Family<PluginLabels, Gauge>,
}

impl ReleaseMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "version_entries",
            "Handler attempts settled, by component version (digest) and outcome (ok, failed: rejected, trapped or asked for a retry)",
            self.version_entries.clone(),
        );
        registry.register(
            "canary_rollbacks",
            "Canaries this host rolled back automatically (the candidate failed more than the stable version)",
            self.canary_rollbacks.clone(),
        );
        registry.register(
            "canary_share",
            "Share of entries (0 to 1) this host routes to the plugin's canary candidate; 0 without one",
            self.canary_share.clone(),
        );
        registry.register(
            "plugin_fuel_consumed",
            "Fuel the plugin's handler invocations consumed (traps included)",
            self.fuel.clone(),
        );
        registry.register_with_unit(
            "plugin_handle",
            "Wall-clock time the plugin's handler invocations took (traps included)",
            Unit::Seconds,
            self.handle_seconds.clone(),
        );
        registry.register(
            "tenant_fuel_consumed",
            "Fuel consumed per value of [plugin.accounting] tenant_field (first 256 values; then `other`)",
            self.tenant_fuel.clone(),
        );
        registry.register_with_unit(
            "tenant_handle",
            "Handling time per value of [plugin.accounting] tenant_field (first 256 values; then `other`)",
            Unit::Seconds,
            self.tenant_seconds.clone(),
        );
        registry.register(
            "circuit_breaker_trips",
            "Times this host paused the plugin on every host because it kept trapping ([plugin.breaker])",
            self.breaker_trips.clone(),
        );
        registry.register_with_unit(
            "cpu_throttled",
            "Time the plugin's workers waited for its CPU share (cpu_weight) while other plugins wanted to run",
            Unit::Seconds,
            self.cpu_throttled.clone(),
        );
        registry.register(
            "shadow_compared",
            "Entries a shadow candidate ran on after the current version (deploy --shadow)",
            self.shadow_compared.clone(),
        );
        registry.register(
            "shadow_differ",
            "Shadowed entries whose outcome or effects differ between the candidate and the current version",
            self.shadow_differ.clone(),
        );
        registry.register(
            "shadow_dropped",
            "Copies for a shadow dropped because its queue was full (the stable path never waits)",
            self.shadow_dropped.clone(),
        );
        registry.register(
            "shadow_running",
            "1 while this host runs the plugin's shadow candidate",
            self.shadow_running.clone(),
        );
    }

    pub(crate) fn plugin(&self, plugin: &str, stream: &str) -> PluginReleaseMetrics {
        let l = PluginLabels {
            plugin: plugin.to_owned(),
            stream: stream.to_owned(),
        };
        PluginReleaseMetrics {
            canary_rollbacks: self.canary_rollbacks.get_or_create(&l).clone(),
            canary_share: self.canary_share.get_or_create(&l).clone(),
            fuel: self.fuel.get_or_create(&l).clone(),
            handle_seconds: self.handle_seconds.get_or_create(&l).clone(),
            breaker_trips: self.breaker_trips.get_or_create(&l).clone(),
            cpu_throttled: self.cpu_throttled.get_or_create(&l).clone(),
            shadow_compared: self.shadow_compared.get_or_create(&l).clone(),
            shadow_differ: self.shadow_differ.get_or_create(&l).clone(),
            shadow_dropped: self.shadow_dropped.get_or_create(&l).clone(),
            shadow_running: self.shadow_running.get_or_create(&l).clone(),
            tenant_fuel: self.tenant_fuel.clone(),
            tenant_seconds: self.tenant_seconds.clone(),
            tenants: Default::default(),
            version_entries: self.version_entries.clone(),
            version_counters: Default::default(),
            labels: l,
        }
    }
}

/// One plugin's handles.
#[derive(Clone)]
pub struct PluginReleaseMetrics {
    /// Canaries this host rolled back automatically.
    pub canary_rollbacks: Counter,
    /// Share of entries routed to the canary candidate here.
    pub canary_share: Gauge<f64, AtomicU64>,
    /// Fuel consumed by the plugin's invocations.
    pub fuel: Counter,
    /// Seconds its invocations took.
    pub handle_seconds: Counter<f64, AtomicU64>,
    /// Circuit-breaker trips on this host.
    pub breaker_trips: Counter,
    /// Seconds its workers waited for its CPU share.
    pub cpu_throttled: Counter<f64, AtomicU64>,
    /// Entries a shadow candidate ran on.
    pub shadow_compared: Counter,
    /// Of those, where it differed.
    pub shadow_differ: Counter,
    /// Copies dropped with the shadow queue full.
    pub shadow_dropped: Counter,
    /// 1 while a shadow runs here.
    pub shadow_running: Gauge,
    tenant_fuel: Family<TenantLabels, Counter>,
    tenant_seconds: Family<TenantLabels, Counter<f64, AtomicU64>>,
    /// Tenant label values given out so far.
    tenants: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    version_entries: Family<VersionLabels, Counter>,
    /// The ok and failed counters of the versions seen so far (a handful),
    /// so counting a settled attempt allocates no labels.
    version_counters: std::sync::Arc<arc_swap::ArcSwap<Vec<VersionCounters>>>,
    labels: PluginLabels,
}

/// One version's `version_entries` counters: (digest, ok, failed).
type VersionCounters = (String, Counter, Counter);

impl PluginReleaseMetrics {
    /// Charges fuel and time to the plugin (a worker's tally of its
    /// invocations since the last flush).
    pub(crate) fn charge(&self, fuel: u64, seconds: f64) {
        self.fuel.inc_by(fuel);
        self.handle_seconds.inc_by(seconds);
    }

    /// Charges one invocation's fuel and time to the tenant whose field
    /// value is `tenant`.
    pub(crate) fn charge_tenant(&self, tenant: &[u8], fuel: u64, seconds: f64) {
        let mut name = crate::display::escape_bytes(tenant);
        if name.len() > MAX_TENANT_LEN {
            let mut end = MAX_TENANT_LEN;
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            name.truncate(end);
        }
        if let Ok(mut known) = self.tenants.lock()
            && !known.contains(&name)
        {
            if known.len() >= MAX_TENANTS {
                name = "other".to_owned();
            } else {
                known.insert(name.clone());
            }
        }
        let l = TenantLabels {
            plugin: self.labels.plugin.clone(),
            stream: self.labels.stream.clone(),
            tenant: name,
        };
        self.tenant_fuel.get_or_create(&l).inc_by(fuel);
        self.tenant_seconds.get_or_create(&l).inc_by(seconds);
    }

    /// Counts settled attempts of `version` (a digest): `ok` that succeeded
    /// and `failed` that did not.
    pub(crate) fn version_entries(&self, version: &str, ok: u64, failed: u64) {
        let pick = |c: &VersionCounters| {
            c.1.inc_by(ok);
            c.2.inc_by(failed);
        };
        if let Some(found) = self.version_counters.load().iter().find(|c| c.0 == version) {
            pick(found);
            return;
        }
        let counter = |outcome: &str| {
            self.version_entries
                .get_or_create(&VersionLabels {
                    plugin: self.labels.plugin.clone(),
                    stream: self.labels.stream.clone(),
                    version: version.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .clone()
        };
        let made = (version.to_owned(), counter("ok"), counter("failed"));
        pick(&made);
        self.version_counters.rcu(|known| {
            let mut known = Vec::clone(known);
            if !known.iter().any(|c| c.0 == version) {
                known.push(made.clone());
            }
            known
        });
    }
}
