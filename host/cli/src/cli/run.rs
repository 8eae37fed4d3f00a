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
    let host = Host::load(config)
        .await
        .context("cannot start")?
        .watch_files(watch);
    let shutdown = CancellationToken::new();
    streamhost::cancel_on_signal(shutdown.clone());
    host.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
