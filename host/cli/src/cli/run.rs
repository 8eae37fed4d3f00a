//! `streamhost run`: consume until a signal.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use streamhost::Host;

/// Loads a config `run` accepts: valid, with at least one plugin.
pub fn load_runnable(config_path: &Path) -> anyhow::Result<streamhost::Config> {
    let config = super::load_config(config_path)?;
    if config.plugins.is_empty() {
        anyhow::bail!(streamhost::ConfigError::Invalid {
            key: "plugin".into(),
            reason: format!(
                "{} configures no [[plugin]]; nothing to run",
                config_path.display()
            ),
        });
    }
    Ok(config)
}

/// Loads the config and every plugin, then consumes until SIGINT/SIGTERM.
/// With `watch`, a plugin swaps whenever its component file changes.
pub async fn run(config_path: &Path, watch: bool) -> anyhow::Result<ExitCode> {
    let config = load_runnable(config_path)?;
    let redis = streamhost::connection::Endpoint::new(&config.redis);
    if redis.is_cluster() {
        check_cluster(&redis).await?;
    }
    let host = Host::load(config)
        .await
        .context("cannot start")?
        .watch_files(watch);
    let shutdown = CancellationToken::new();
    streamhost::cancel_on_signal(shutdown.clone());
    host.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// A cluster must answer at start: a seed list that reaches no node is a
/// config mistake far more often than an outage, so `run` and `check` stop
/// with exit 2 instead of retrying for ever (a single node is waited for).
pub async fn check_cluster(redis: &streamhost::connection::Endpoint) -> anyhow::Result<()> {
    super::connect(redis).await.map_err(|e| {
        anyhow::Error::new(super::BadInput(format!(
            "no node of the Redis Cluster answers at redis.urls ({}): {e:#}; start the cluster or fix the seeds",
            redis.redacted()
        )))
    })?;
    Ok(())
}
