//! The host's operational side tasks, started and stopped around the
//! consumers: the admin endpoint with the dashboard and its history sampler,
//! one gauge refresher per plugin, one task per retention rule. None of them
//! touches the delivery path.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, Consuming, Listener, Readiness};
use crate::config::Config;
use crate::dashboard::Dashboard;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::pipeline::PluginContext;
use crate::{gauges, retention};

/// Gauge refresh interval when the admin listener comes without an `[admin]` table.
const DEFAULT_REFRESH_MS: u64 = 5_000;

/// Running side tasks.
pub(crate) struct Operations {
    readiness: Arc<Readiness>,
    tasks: JoinSet<()>,
    /// Stops the admin endpoint, which outlives the consumers' drain so
    /// `/readyz` can say "shutting down" meanwhile.
    admin_stop: CancellationToken,
}

impl Operations {
    /// Starts the side tasks the config asks for. Gauges and retention stop
    /// with `shutdown`; the admin endpoint at [`Operations::stop`].
    pub(crate) fn start(
        config: &Config,
        plugins: &[Arc<PluginContext>],
        metrics: &Arc<Metrics>,
        admin: Option<Listener>,
        shutdown: &CancellationToken,
    ) -> Result<Operations> {
        let names: Vec<String> = config.plugins.iter().map(|p| p.name.clone()).collect();
        let readiness = Readiness::new(names);
        let mut tasks = JoinSet::new();
        let admin_stop = CancellationToken::new();
        let url = crate::connection::Endpoint::new(&config.redis);
        for ctx in plugins {
            let pc = &ctx.config;
            metrics.set_plugin_version(&pc.name, pc.source_key(), pc.group(), &ctx.plugin.digest);
        }
        if let Some(listener) = admin {
            let dashboard = Dashboard::new(config, plugins.to_vec(), metrics.clone())?;
            tasks.spawn(dashboard.clone().sample(shutdown.clone()));
            let state =
                AdminState::new(metrics.clone(), readiness.clone(), url.clone(), dashboard)?;
            tasks.spawn(admin::serve(listener, state, admin_stop.clone()));
            tasks.spawn(mark_draining(
                readiness.clone(),
                shutdown.clone(),
                admin_stop.clone(),
            ));
            let every = Duration::from_millis(
                config
                    .admin
                    .as_ref()
                    .map_or(DEFAULT_REFRESH_MS, |a| a.refresh_ms),
            );
            for pc in &config.plugins {
                let gauges = metrics.group_gauges(&pc.name, pc.source_key());
                tasks.spawn(gauges::run(
                    pc.clone(),
                    gauges,
                    url.clone(),
                    every,
                    shutdown.clone(),
                ));
            }
        }
        for rule in &config.retention {
            let handles = metrics.retention(&rule.stream);
            tasks.spawn(retention::run(
                rule.clone(),
                url.clone(),
                handles,
                shutdown.clone(),
            ));
        }
        Ok(Operations {
            readiness,
            tasks,
            admin_stop,
        })
    }

    /// Marks the plugin table at `index` (of the sharded config) consuming
    /// for readiness until the guard drops; hold it
    /// in the plugin's consumer task.
    pub(crate) fn consuming(&self, index: usize) -> Consuming {
        self.readiness.consuming(index)
    }

    /// Stops the admin endpoint and waits for every side task.
    pub(crate) async fn stop(mut self) {
        self.readiness.stopping();
        self.admin_stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Turns `/readyz` to 503 as soon as shutdown starts, while consumers drain.
async fn mark_draining(
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
    stop: CancellationToken,
) {
    tokio::select! {
        _ = shutdown.cancelled() => readiness.stopping(),
        _ = stop.cancelled() => {}
    }
}
