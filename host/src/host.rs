//! The host: loads every configured plugin, then runs each one's consumer
//! until shutdown.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceKind};
use crate::consumer;
use crate::effects::EffectPolicy;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::operations::Operations;
use crate::pipeline::PluginContext;
use crate::plugin::{EngineOptions, LoadedPlugin, WasmEngine};
use crate::redis_health::RedisHealth;

/// A host with its plugins loaded and validated, ready to consume.
pub struct Host {
    config: Config,
    plugins: Vec<Arc<LoadedPlugin>>,
    metrics: Arc<Metrics>,
    watch: bool,
    redis_health: Arc<RedisHealth>,
}

/// Engine sizing for a config: enough pool slots for every worker plus room
/// for validation and replacement instances.
pub fn engine_options(config: &Config) -> EngineOptions {
    // Plugins of other sources than a stream run one more worker, on their
    // redelivery stream (consumer/mod.rs, `spawn_redelivery`).
    let workers: usize = config
        .plugins
        .iter()
        .map(|p| p.concurrency + usize::from(!matches!(p.source(), SourceKind::Stream(_))))
        .sum();
    let max_memory_mib = config
        .plugins
        .iter()
        .map(|p| p.limits.memory_mib)
        .max()
        .unwrap_or(64);
    let options = EngineOptions {
        max_instances: u32::try_from(workers * 2 + 16).unwrap_or(u32::MAX),
        max_memory_bytes: usize::try_from(max_memory_mib.saturating_mul(1 << 20))
            .unwrap_or(usize::MAX),
        cache_dir: config.cache.directory(),
        ..EngineOptions::default()
    };
    config
        .plugins
        .iter()
        .fold(options, |o, p| o.fitting(&p.limits))
}

/// Loads every plugin of a config: reads, checks, compiles and instantiates
/// each once. The first failure is returned; nothing starts consuming with a
/// broken plugin in the config.
pub async fn load_plugins(
    config: &Config,
    engine: &Arc<WasmEngine>,
) -> Result<Vec<Arc<LoadedPlugin>>> {
    let mut loaded = Vec::with_capacity(config.plugins.len());
    for p in &config.plugins {
        let (engine, name, path, limits) = (
            engine.clone(),
            p.name.clone(),
            p.component.clone(),
            p.limits.clone(),
        );
        let plugin = tokio::task::spawn_blocking(move || {
            LoadedPlugin::load_file(&engine, &name, &path, &limits)
        })
        .await
        .map_err(|source| Error::Task {
            task: format!("loading plugin {:?}", p.name),
            source,
        })??
        .with_effects(EffectPolicy::from_config(p));
        // Instantiating once catches components whose start function traps.
        plugin.instantiate().await?;
        tracing::info!(plugin = %plugin.name, version = %plugin.digest, component = %p.component.display(), "loaded");
        loaded.push(Arc::new(plugin));
    }
    Ok(loaded)
}

/// Each plugin once per table of [`Config::sharded`]: a shard's copy shares
/// the compiled code, with effects (state, schedule) in the shard's slot.
fn per_shard(config: &Config, plugins: Vec<Arc<LoadedPlugin>>) -> Vec<Arc<LoadedPlugin>> {
    config
        .plugins
        .iter()
        .zip(plugins)
        .flat_map(|(pc, plugin)| {
            if pc.shards.is_none() {
                return vec![plugin];
            }
            pc.shard_tables()
                .iter()
                .map(|table| {
                    Arc::new(
                        (*plugin)
                            .clone()
                            .with_effects(EffectPolicy::from_config(table)),
                    )
                })
                .collect()
        })
        .collect()
}

impl Host {
    /// Builds the engine and loads every plugin.
    pub async fn load(config: Config) -> Result<Host> {
        // A sharded stream runs as one plugin table per shard, all sharing
        // one loaded component.
        let engine = WasmEngine::new(&engine_options(&config.sharded()))?;
        let plugins = per_shard(&config, load_plugins(&config, &engine).await?);
        let config = config.sharded();
        Ok(Host {
            config,
            plugins,
            metrics: Arc::new(Metrics::new()),
            watch: false,
            redis_health: Default::default(),
        })
    }

    /// A host over plugins loaded by the caller (native handlers, taps: see
    /// `plugin::native`), one per `config.plugins` entry, in the same order.
    pub fn with_plugins(config: Config, plugins: Vec<Arc<LoadedPlugin>>) -> Result<Host> {
        if plugins.len() != config.plugins.len() {
            return Err(Error::PluginCount {
                loaded: plugins.len(),
                tables: config.plugins.len(),
            });
        }
        config.validate()?;
        let plugins = per_shard(&config, plugins);
        let config = config.sharded();
        Ok(Host {
            config,
            plugins,
            metrics: Arc::new(Metrics::new()),
            watch: false,
            redis_health: Default::default(),
        })
    }

    /// Whether Redis answers, as every plugin's loops see it.
    pub fn redis_health(&self) -> Arc<RedisHealth> {
        self.redis_health.clone()
    }

    /// Also swap a plugin when its component file changes on disk (`run --watch`).
    pub fn watch_files(mut self, watch: bool) -> Host {
        self.watch = watch;
        self
    }

    /// The host's metrics (shared with the admin endpoint and tests).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The loaded plugins, in config order.
    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    /// Consumes until `shutdown` fires, then drains and returns. Serves the
    /// admin endpoint when `[admin]` is configured.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let admin = match &self.config.admin {
            Some(a) => Some(crate::admin::Listener::bind(&a.listen).await?),
            None => None,
        };
        self.run_with_admin(admin, shutdown).await
    }

    /// [`Host::run`] with the admin endpoint on a listener the caller bound
    /// (to know its address first, e.g. port 0 in tests).
    pub async fn run_with_admin(
        self,
        admin: Option<crate::admin::Listener>,
        shutdown: CancellationToken,
    ) -> Result<()> {
        // Plugins share the CPU by weight; the shard tables of one plugin
        // share its one budget, and a plugin alone has no one to share with.
        let mut names: Vec<&str> = Vec::new();
        let mut weights: Vec<u32> = Vec::new();
        for p in &self.config.plugins {
            if !names.contains(&p.name.as_str()) {
                names.push(&p.name);
                weights.push(p.cpu_weight);
            }
        }
        let shares = (names.len() > 1).then(|| {
            let threads = tokio::runtime::Handle::current().metrics().num_workers();
            crate::pipeline::CpuShares::new(threads, &weights)
        });
        let contexts: Vec<Arc<PluginContext>> = self
            .plugins
            .iter()
            .zip(&self.config.plugins)
            .map(|(plugin, pc)| {
                let mut ctx = PluginContext::new(
                    plugin.clone(),
                    pc.clone(),
                    self.metrics.plugin(&pc.name, pc.source_key()),
                );
                ctx.cpu_share = shares.as_ref().and_then(|s| {
                    let index = names.iter().position(|n| *n == pc.name)?;
                    Some(s.share(index))
                });
                ctx.watch = self.watch;
                ctx.registry = Some(self.metrics.clone());
                ctx.redis_health = self.redis_health.clone();
                Arc::new(ctx)
            })
            .collect();
        let ops = Operations::start(&self.config, &contexts, &self.metrics, admin, &shutdown)?;
        let mut tasks = JoinSet::new();
        for (index, (ctx, pc)) in contexts.into_iter().zip(&self.config.plugins).enumerate() {
            tracing::info!(plugin = %pc.name, stream = %pc.source_key(), group = pc.group(), consumer = %ctx.consumer, "consuming");
            let redis = crate::connection::Endpoint::new(&self.config.redis);
            let stop = shutdown.clone();
            let consuming = ops.consuming(index);
            tasks.spawn(async move {
                let _consuming = consuming;
                consumer::run(ctx, redis, stop).await
            });
        }
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            let result = done
                .map_err(|source| Error::Task {
                    task: "a plugin's consuming task".to_owned(),
                    source,
                })
                .and_then(|r| r);
            if let Err(e) = result {
                tracing::error!(error = %e, "plugin stopped with an error");
                shutdown.cancel();
                first_error.get_or_insert(e);
            }
        }
        ops.stop().await;
        first_error.map_or(Ok(()), Err)
    }
}
