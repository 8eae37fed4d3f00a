//! `streamhost invoke`: runs messages through a component with the host's
//! sandbox and no Redis, and prints per message what it came to, the effects
//! it asked for, its logs, fuel and peak memory.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use streamhost::Outcome;
use streamhost::config::PluginConfig;
use streamhost::display::{escape_bytes, escape_str};
use streamhost::plugin::bindings::Level;
use streamhost::plugin::{
    EngineOptions, Field, Invoker, LoadedPlugin, Message, Report, Source, StreamEntry, WasmEngine,
};
use streamhost::{Effect, EffectPolicy};

use super::BadInput;
use super::fixtures::{self, Fixture};

/// Arguments of `streamhost invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The component to run.
    pub component: PathBuf,
    /// A field of a message built from the command line (repeatable, in order).
    #[arg(long = "field", value_name = "NAME=VALUE")]
    pub fields: Vec<String>,
    /// Messages from a JSON Lines file: one JSON object of fields per line
    /// (string values as UTF-8, `{"hex": "..."}` for any bytes).
    #[arg(long, value_name = "FILE.jsonl")]
    pub fixtures: Option<PathBuf>,
    /// Take limits and `[plugin.allow]` from this config's plugin (default:
    /// default limits, every effect allowed).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
    /// The plugin of `--config` to take them from (default: its first).
    #[arg(long)]
    pub plugin: Option<String>,
    /// The stream name messages appear to come from.
    #[arg(long, default_value = "invoke")]
    pub stream: String,
}

/// Loads the component and runs every message; exit 1 if any trapped.
pub async fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let plugin_config = plugin_config(&args)?;
    let mut messages: Vec<Fixture> = Vec::new();
    if let Some(path) = &args.fixtures {
        messages.extend(fixtures::read(path)?);
    }
    if !args.fields.is_empty() {
        messages.push(fixtures::from_flags(&args.fields)?);
    }
    if messages.is_empty() {
        return Err(BadInput(
            "nothing to invoke: give --field NAME=VALUE or --fixtures FILE.jsonl".into(),
        )
        .into());
    }
    let mut invoker = invoker(&args.component, &plugin_config).await?;
    let mut trapped = false;
    for (n, fixture) in messages.into_iter().enumerate() {
        let id = format!("{}-0", n + 1);
        let msg = Message {
            source: Source::Stream(StreamEntry {
                name: args.stream.clone(),
                id: id.clone(),
            }),
            id,
            fields: fixture
                .fields
                .into_iter()
                .map(|(name, value)| Field { name, value })
                .collect(),
            attempt: 1,
        };
        let report = invoker.invoke(&msg).await?;
        trapped |= matches!(report.outcome, Outcome::Trap(..));
        print!("{}", render(n + 1, &fixture.origin, &report));
    }
    Ok(if trapped {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Loads and compiles a component for invoking (CPU-heavy: a blocking thread).
pub async fn invoker(component: &Path, config: &PluginConfig) -> anyhow::Result<Invoker> {
    // The compile cache: Python and JS components take seconds to compile.
    let options = EngineOptions {
        max_instances: 4,
        cache_dir: streamhost::config::CacheConfig::default().directory(),
        ..EngineOptions::default()
    }
    .fitting(&config.limits);
    let engine = WasmEngine::new(&options)?;
    let (component, config) = (component.to_owned(), config.clone());
    let plugin = tokio::task::spawn_blocking(move || {
        let mut plugin =
            LoadedPlugin::load_file(&engine, &config.name, &component, &config.limits)?;
        plugin.effects = Arc::new(EffectPolicy::from_config(&config));
        anyhow::Ok(plugin)
    })
    .await
    .context("the loading thread failed")??;
    Ok(Invoker::new(plugin))
}

/// The plugin config whose limits and allow-list apply.
fn plugin_config(args: &InvokeArgs) -> anyhow::Result<PluginConfig> {
    let Some(path) = &args.config else {
        return Ok(allow_all(&args.component));
    };
    let config = super::load_config(path)?;
    let found = match &args.plugin {
        Some(name) => config.plugins.iter().find(|p| &p.name == name),
        None => config.plugins.first(),
    };
    found.cloned().ok_or_else(|| {
        BadInput(format!(
            "{} has no [[plugin]]{}",
            path.display(),
            args.plugin
                .as_ref()
                .map(|n| format!(" named {n:?}"))
                .unwrap_or_default()
        ))
        .into()
    })
}

/// Default limits and every effect allowed: `invoke` shows what a handler asks for.
pub fn allow_all(component: &Path) -> PluginConfig {
    let name = component
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "invoke".into());
    let mut config = PluginConfig::new(&name, component, "invoke");
    config.allow = streamhost::config::AllowConfig {
        emit: vec!["*".into()],
        publish: vec!["*".into()],
        schedule: vec!["*".into()],
        push: vec!["*".into()],
        zadd: vec!["*".into()],
    };
    config
}

/// One message's report as text, every guest-controlled byte escaped.
pub fn render(n: usize, origin: &str, report: &Report) -> String {
    let outcome = match &report.outcome {
        Outcome::Ok => "ok".to_owned(),
        Outcome::Retry(reason) => format!("retry: {}", escape_str(reason)),
        Outcome::Reject(reason) => format!("reject: {}", escape_str(reason)),
        Outcome::Trap(kind, detail) => format!("trap ({kind}): {}", escape_str(detail)),
    };
    let mut out = format!(
        "#{n} {origin}: {outcome}\n   fuel={} peak_memory={:.1}MiB time={:.1}ms{}\n",
        report.fuel,
        report.peak_memory_bytes as f64 / f64::from(1 << 20),
        report.elapsed.as_secs_f64() * 1000.0,
        if report.instantiated {
            " (new instance)"
        } else {
            ""
        }
    );
    for (level, line) in &report.logs {
        out += &format!("   log {}: {}\n", level_name(*level), escape_str(line));
    }
    for effect in &report.effects {
        out += &format!("   effect {}\n", effect_line(effect));
    }
    out
}

/// A log level as the WIT names it.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

fn fields_text(fields: &[Field]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("{}={}", escape_str(&f.name), escape_bytes(&f.value)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// One effect as text.
pub fn effect_line(effect: &Effect) -> String {
    match effect {
        Effect::Emit {
            stream,
            fields,
            max_len,
        } => format!(
            "emit {} {}{}",
            escape_str(stream),
            fields_text(fields),
            max_len.map(|n| format!(" max_len={n}")).unwrap_or_default()
        ),
        Effect::Publish { channel, payload } => {
            format!("publish {} {}", escape_str(channel), escape_bytes(payload))
        }
        Effect::Schedule {
            stream,
            fields,
            delay_ms,
        } => format!(
            "schedule {} {} in {delay_ms}ms",
            escape_str(stream),
            fields_text(fields)
        ),
        Effect::Set { key, value } => {
            format!("kv-set {} = {}", escape_str(key), escape_bytes(value))
        }
        Effect::Delete { key } => format!("kv-delete {}", escape_str(key)),
        Effect::Push { key, item } => {
            format!("push {} {}", escape_str(key), escape_bytes(item))
        }
        Effect::Zadd { key, member, score } => format!(
            "zadd {} {} score={score}",
            escape_str(key),
            escape_bytes(member)
        ),
    }
}
