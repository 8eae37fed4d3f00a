//! `streamhost deploy`, `versions` and `rollback`: fleet-wide hot swaps.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Args;

use streamhost::config::LimitsConfig;
use streamhost::plugin::{EngineOptions, LoadedPlugin, WasmEngine};
use streamhost::{deploy, release};

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

/// Stores a validated candidate and starts a canary of `share_ppm`, or a
/// shadow (`None`).
pub async fn canary_cmd(
    target: &Target,
    plugin: &str,
    file: &Path,
    by: Option<String>,
    share_ppm: Option<u32>,
) -> anyhow::Result<ExitCode> {
    let (url, limits) = resolve(target, plugin, false)?;
    let bytes = streamhost::plugin::registry::read_component(plugin, file, &limits)?;
    validate(plugin, &bytes, file, &limits).await?;
    let mut conn = super::connect(&url).await?;
    if deploy::current(&mut conn, plugin).await?.is_none()
        && !deploy::is_known(&mut conn, plugin).await?
    {
        bail!(super::BadInput(format!(
            "no host has run a plugin named {plugin:?}: a candidate needs a running version to compare with"
        )));
    }
    let by = by.unwrap_or_else(invoking_user);
    let Some(share_ppm) = share_ppm else {
        let c = release::start_shadow(&mut conn, plugin, &bytes, &by).await?;
        println!(
            "{plugin}: shadow of {} started: every host runs it on a copy of each entry handled, \
             effects never committed; `streamhost shadow {plugin}` reports the differences, \
             `streamhost rollback {plugin}` ends it",
            c.digest
        );
        return Ok(ExitCode::SUCCESS);
    };
    let c = release::start_canary(&mut conn, plugin, &bytes, share_ppm, &by).await?;
    println!(
        "{plugin}: canary of {} started: {} of entries go to it on every host; \
         `streamhost promote {plugin}` makes it current, `streamhost rollback {plugin}` ends it",
        c.digest,
        share_text(c.share_ppm)
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the shadow report.
pub async fn shadow_cmd(
    target: &Target,
    plugin: &str,
    json: bool,
    examples: usize,
) -> anyhow::Result<ExitCode> {
    let (url, _) = resolve(target, plugin, true)?;
    let mut conn = super::connect(&url).await?;
    let record = release::canary(&mut conn, plugin)
        .await?
        .filter(|c| c.mode == release::Mode::Shadow);
    let Some(record) = record else {
        bail!(super::BadInput(format!(
            "plugin {plugin:?} has no shadow (start one with `streamhost deploy {plugin} FILE.wasm --shadow`)"
        )));
    };
    let mut report = release::shadow_report(&mut conn, plugin).await?;
    let skip = report.examples.len().saturating_sub(examples);
    report.examples.drain(..skip);
    if json {
        let doc = serde_json::json!({
            "plugin": plugin,
            "candidate": record.digest,
            "state": record.state.as_str(),
            "compared": report.compared,
            "differ": report.differ,
            "dropped": report.dropped,
            "examples": report.examples,
        });
        println!("{doc}");
        return Ok(ExitCode::SUCCESS);
    }
    let percent = if report.compared == 0 {
        0.0
    } else {
        report.differ as f64 * 100.0 / report.compared as f64
    };
    println!(
        "{plugin}: shadow of {} ({}): {} entries compared, {} differ ({percent:.2}%), {} copies dropped (queue full)",
        record.digest,
        record.state.as_str(),
        report.compared,
        report.differ,
        report.dropped
    );
    for e in &report.examples {
        println!("  entry {} (on {})", e.id, e.host);
        println!("    current:   {}", e.stable);
        println!("    candidate: {}", e.candidate);
    }
    Ok(ExitCode::SUCCESS)
}

/// Makes the canary's candidate current.
pub async fn promote_cmd(
    target: &Target,
    plugin: &str,
    by: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (url, _) = resolve(target, plugin, true)?;
    let mut conn = super::connect(&url).await?;
    let by = by.unwrap_or_else(invoking_user);
    let v = release::promote(&mut conn, plugin, &by).await?;
    println!(
        "{plugin}: promoted the canary: version {} ({}) is now current on every host",
        v.version, v.digest
    );
    Ok(ExitCode::SUCCESS)
}

/// A canary share as given: "5%", "0.5%", "5" (percent), to parts per million.
pub fn parse_share(text: &str) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%').trim();
    let percent: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage like 5% or 0.5%"))?;
    if !percent.is_finite() || percent <= 0.0 || percent > 100.0 {
        return Err(format!(
            "{text:?}: a canary share must be more than 0% and at most 100%"
        ));
    }
    let ppm = (percent * 10_000.0).round();
    if ppm < 1.0 {
        return Err(format!("{text:?}: the smallest share is 0.0001%"));
    }
    Ok(ppm as u32)
}

fn share_text(ppm: u32) -> String {
    format!("{}%", f64::from(ppm) / 10_000.0)
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
    if let Some(c) = release::canary(&mut conn, plugin).await? {
        let what = match c.mode {
            release::Mode::Canary => format!("canary: {} of entries to", share_text(c.share_ppm)),
            release::Mode::Shadow => "shadow:".to_owned(),
        };
        println!(
            "\n{what} {} (started {} by {}): {}{}",
            c.digest,
            when(c.at_ms),
            c.by,
            c.state.as_str(),
            if c.ended.is_empty() {
                String::new()
            } else {
                format!(" at {}, {}", when(c.ended_ms), c.ended)
            }
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
    // A running canary is what a rollback undoes first.
    if version.is_none()
        && release::canary(&mut conn, plugin)
            .await?
            .is_some_and(|c| c.state == release::State::Active)
    {
        let c = release::end_canary(&mut conn, plugin, &by).await?;
        println!(
            "{plugin}: ended the {} of {}; every entry goes to the current version alone",
            c.mode.as_str(),
            c.digest
        );
        return Ok(ExitCode::SUCCESS);
    }
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
