//! `streamhost deploy`, `versions` and `rollback`: fleet-wide hot swaps.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;

use streamhost::config::LimitsConfig;
use streamhost::deploy;
use streamhost::plugin::{EngineOptions, LoadedPlugin, WasmEngine};

/// Where to find Redis (and the plugin's limits) for the deploy commands.
#[derive(Debug, Args)]
pub struct Target {
    /// Config file: Redis URL and the plugin's limits used to validate a candidate.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// Redis URL (overrides the config and REDIS_URL).
    #[arg(long)]
    pub redis: Option<String>,
}

/// Validates a component like a host would, stores it in Redis and makes it
/// the plugin's current version; every host running the plugin swaps to it.
/// A plugin name no host has run and that was never deployed needs `create`.
pub async fn deploy_cmd(
    target: &Target,
    plugin: &str,
    file: &Path,
    by: Option<String>,
    create: bool,
) -> anyhow::Result<ExitCode> {
    let (url, limits) = resolve(target, plugin, create)?;
    let bytes = streamhost::plugin::registry::read_component(plugin, file, &limits)?;
    validate(plugin, &bytes, file, &limits).await?;
    let mut conn = super::connect(&url).await?;
    if !create && target.config.is_none() && !deploy::is_known(&mut conn, plugin).await? {
        bail!(super::BadInput(format!(
            "no host has run a plugin named {plugin:?} and it was never deployed; \
             check the name, or pass --create to start its version history"
        )));
    }
    let by = by.unwrap_or_else(invoking_user);
    let v = deploy::deploy(&mut conn, plugin, &bytes, &by).await?;
    if v.created {
        println!(
            "deployed {plugin} version {} ({}); hosts running it swap now",
            v.version, v.digest
        );
    } else {
        println!(
            "{plugin}: {} is already the current version {}; nothing changed",
            v.digest, v.version
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Who runs the command, for the version record: the login name, as `$USER`
/// or `$LOGNAME` say, else the numeric user id.
fn invoking_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| !name.trim().is_empty())
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|| format!("uid-{}", unsafe { libc::getuid() }))
}

/// Lists a plugin's versions and the refusals hosts reported.
pub async fn versions_cmd(target: &Target, plugin: &str) -> anyhow::Result<ExitCode> {
    let (url, _) = resolve(target, plugin, true)?;
    let mut conn = super::connect(&url).await?;
    let history = deploy::versions(&mut conn, plugin).await?;
    let current = deploy::current(&mut conn, plugin).await?;
    if history.is_empty() {
        println!("{plugin}: never deployed (hosts run their config file's component)");
    }
    println!(
        "{:<3} {:>7}  {:<24} {:<20} {:<18} digest",
        "", "VERSION", "WHEN (UTC)", "BY", "ACTION"
    );
    for v in &history {
        let mark = if current.as_ref().is_some_and(|(n, _)| *n == v.version) {
            "*"
        } else {
            ""
        };
        println!(
            "{mark:<3} {:>7}  {:<24} {:<20} {:<18} {}",
            v.version,
            when(v.at_ms),
            v.by,
            v.action,
            v.digest
        );
    }
    let refusals = deploy::refusals(&mut conn, plugin).await?;
    if !refusals.is_empty() {
        println!("\nrefused by hosts:");
        for r in refusals {
            println!("  {}  {}  {}: {}", when(r.at_ms), r.host, r.digest, r.error);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Makes an earlier version current again.
pub async fn rollback_cmd(
    target: &Target,
    plugin: &str,
    version: Option<u64>,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (url, _) = resolve(target, plugin, true)?;
    let mut conn = super::connect(&url).await?;
    let by = by.unwrap_or_else(invoking_user);
    let v = deploy::rollback(&mut conn, plugin, version, &by).await?;
    println!(
        "{plugin}: version {} is now current ({}, {})",
        v.version, v.action, v.digest
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads, checks and instantiates the candidate once, as every host will.
async fn validate(
    plugin: &str,
    bytes: &[u8],
    file: &Path,
    limits: &LimitsConfig,
) -> anyhow::Result<()> {
    // Sized like a host running this plugin, so what passes here passes there.
    let options = EngineOptions {
        max_memory_bytes: 0,
        ..EngineOptions::default()
    }
    .fitting(limits);
    let engine = WasmEngine::new(&options)?;
    let (name, bytes, what, limits) = (
        plugin.to_owned(),
        bytes.to_vec(),
        file.display().to_string(),
        limits.clone(),
    );
    let loaded = tokio::task::spawn_blocking(move || {
        LoadedPlugin::load_bytes(&engine, &name, &bytes, &what, &limits)
    })
    .await
    .context("validation panicked")??;
    loaded.instantiate().await?;
    Ok(())
}

/// The Redis URL and the plugin's limits (defaults without a config, or for
/// a plugin the config lacks when `create` allows one).
fn resolve(
    target: &Target,
    plugin: &str,
    create: bool,
) -> anyhow::Result<(streamhost::connection::Endpoint, LimitsConfig)> {
    // A name the config would refuse could never be run; refuse it here too.
    streamhost::config::check_plugin_name(plugin).map_err(|why| {
        streamhost::ConfigError::Invalid {
            key: "plugin".into(),
            reason: format!("{plugin:?}: {why}"),
        }
    })?;
    let config = target
        .config
        .as_deref()
        .map(super::load_config)
        .transpose()?;
    let limits = match &config {
        Some(c) => match c.plugins.iter().find(|p| p.name == plugin) {
            Some(p) => p.limits.clone(),
            None if create => LimitsConfig::default(),
            None => bail!(streamhost::ConfigError::Invalid {
                key: "plugin".into(),
                reason: format!(
                    "no plugin named {plugin:?} in the config (pass --create for a new plugin)"
                ),
            }),
        },
        None => LimitsConfig::default(),
    };
    let url = super::redis_endpoint(target.redis.as_deref(), config.as_ref())?;
    Ok((url, limits))
}

fn when(ms: u64) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    // Formatting fails past year 9999 (a corrupt record): show the number.
    match write!(
        out,
        "{}",
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms))
    ) {
        Ok(()) => out,
        Err(_) => format!("{ms} ms"),
    }
}
