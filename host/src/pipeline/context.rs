//! What every task of one plugin shares: its config, the running version,
//! its metric handles and the entries this host holds.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::inflight;
use super::waiting::Waiting;
use crate::config::PluginConfig;
use crate::metrics::PluginMetrics;
use crate::plugin::LoadedPlugin;
use crate::redis_health::RedisHealth;

/// What every task of one plugin shares.
pub struct PluginContext {
    /// The component loaded at start (its name, engine and limits stay valid
    /// across hot swaps; use [`PluginContext::running`] for the version to invoke).
    pub plugin: Arc<LoadedPlugin>,
    /// The version new entries go to; replaced by hot swaps.
    pub current: ArcSwap<LoadedPlugin>,
    /// The deployed version number this host last acted on (swapped to or refused).
    followed: std::sync::Mutex<Option<u64>>,
    /// Swap when the component file changes on disk (`run --watch`).
    pub watch: bool,
    /// The host's registry, to relabel the running version after a swap.
    pub registry: Option<Arc<crate::metrics::Metrics>>,
    /// The plugin's config table.
    pub config: PluginConfig,
    /// This host's consumer name in the group.
    pub consumer: String,
    /// The dead-letter stream.
    pub dlq_stream: String,
    /// The plugin's redelivery stream (where `dlq replay` puts its dead
    /// letters), read by the same group beside the source stream.
    pub redeliver_stream: String,
    /// Metric handles.
    pub metrics: PluginMetrics,
    /// Entries this host holds (queued, being handled, awaiting ack or retry).
    pub inflight: inflight::InFlight,
    /// Set while the plugin is paused: the source's reader and claimer wait on it.
    pub paused: crate::pause::PauseFlag,
    /// Entries waiting here for their next attempt (shown by the dashboard).
    pub retries: Waiting,
    /// Whether Redis answers: loops report to it instead of logging every retry.
    pub redis_health: Arc<RedisHealth>,
    /// Per-key lanes when the plugin sets `ordering`.
    pub(crate) ordering: Option<super::ordering::Ordering>,
    /// The canary this host routes a share of entries to, if any.
    pub(crate) canary: super::canary::CanaryRoute,
    /// Traps counted for the circuit breaker.
    pub(crate) breaker: super::breaker::TrapWindow,
    /// Where handled entries are copied to while a shadow runs.
    pub(crate) shadow: super::shadow::ShadowTap,
    /// Its share of the host's CPU beside other plugins (`cpu_weight`);
    /// none for a host's only plugin.
    pub(crate) cpu_share: Option<super::cpu_share::CpuShare>,
    /// Set once an instance was recycled for its memory (logged once).
    pub(crate) recycled: std::sync::atomic::AtomicBool,
}

impl PluginContext {
    /// A context whose running version is `plugin`.
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        config: PluginConfig,
        metrics: PluginMetrics,
    ) -> PluginContext {
        let ordering = config
            .ordering
            .as_ref()
            .map(|o| super::ordering::Ordering::new(&o.key, &config.redeliver_stream()));
        PluginContext {
            current: ArcSwap::new(plugin.clone()),
            followed: std::sync::Mutex::new(None),
            watch: false,
            registry: None,
            consumer: config.consumer(),
            dlq_stream: config.dlq_stream(),
            redeliver_stream: config.redeliver_stream(),
            inflight: inflight::InFlight::counted(metrics.in_flight.clone()),
            retries: Waiting::counted(metrics.retries_waiting.clone()),
            paused: Default::default(),
            plugin,
            config,
            metrics,
            redis_health: Default::default(),
            ordering,
            canary: Default::default(),
            breaker: Default::default(),
            shadow: Default::default(),
            cpu_share: None,
            recycled: Default::default(),
        }
    }

    /// The deployed version number this host last acted on.
    pub fn followed(&self) -> Option<u64> {
        self.followed.lock().ok().and_then(|v| *v)
    }

    /// Records that this host acted on deployed version `version`.
    pub fn note_followed(&self, version: u64) {
        if let Ok(mut v) = self.followed.lock() {
            *v = Some(version);
        }
    }

    /// The version new entries go to.
    pub fn running(&self) -> Arc<LoadedPlugin> {
        self.current.load_full()
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        self.config.group()
    }
    /// The source stream.
    pub fn stream(&self) -> &str {
        self.config.source_key()
    }
}
