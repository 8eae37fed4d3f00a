//! `streamhost check`: the config and component checks of `run`, without consuming.

use std::path::Path;
use std::process::ExitCode;

use streamhost::host::{engine_options, load_plugins};
use streamhost::plugin::WasmEngine;

/// Validates the config and loads every component; prints one line per plugin.
pub async fn check(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let engine = WasmEngine::new(&engine_options(&config))?;
    let plugins = load_plugins(&config, &engine).await?;
    for (p, pc) in plugins.iter().zip(&config.plugins) {
        println!(
            "ok  {:<24} {}  stream={} group={}",
            p.name,
            p.digest,
            pc.stream,
            pc.group()
        );
    }
    for (dlq, names) in config.shared_dlqs() {
        println!(
            "warning: plugins {} share the dead-letter stream {dlq}; each `dlq` command, \
             `status` and the DLQ gauge act on one plugin's entries only, but one plugin's \
             dead letters can crowd out another's (give each its own, the default)",
            names.join(", ")
        );
    }
    println!(
        "{}: {} plugin(s) valid",
        config_path.display(),
        plugins.len()
    );
    Ok(ExitCode::SUCCESS)
}
