//! `bench --guest rust,python,js`: the validator workload through the order
//! validator written in each language (`plugins/order-validator`,
//! `tests/guests/{python,js}/order-validator`; the CLI finds or builds the
//! components), side by side in one run.
//!
//! Per language: the start from an empty compile cache and from a warm one
//! (load, instantiate, first order), fuel per order on a warm instance, then
//! the pipeline run's throughput, CPU and the host RSS the plugin adds.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use serde::Serialize;

use super::pipeline::{Tuning, bench_config, bench_plugin, drive};
use super::report::Run;
use super::usage::current_rss;
use super::workload::order_json;
use streamhost::Host;
use streamhost::config::{CacheConfig, Isolation};
use streamhost::plugin::{
    EngineOptions, Field, Invoker, LoadedPlugin, Message, Source, StreamEntry, WasmEngine,
};

/// A language the order validator is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestLang {
    /// `plugins/order-validator` (bundled in this binary).
    Rust,
    /// `tests/guests/python/order-validator` (componentize-py).
    Python,
    /// `tests/guests/js/order-validator` (componentize-js).
    Js,
}

impl GuestLang {
    /// Lower-case name, as in `--guest`.
    pub fn name(self) -> &'static str {
        match self {
            GuestLang::Rust => "rust",
            GuestLang::Python => "python",
            GuestLang::Js => "js",
        }
    }
}

/// A component to bench, and how it was obtained.
#[derive(Debug, Clone)]
pub struct GuestComponent {
    /// Its language.
    pub lang: GuestLang,
    /// The file.
    pub path: PathBuf,
    /// Seconds the SDK's build step took (`None`: given, bundled or cached).
    pub build_s: Option<f64>,
}

/// One language's figures.
#[derive(Debug, Clone, Serialize)]
pub struct GuestRun {
    /// `rust`, `python` or `js`.
    pub lang: GuestLang,
    /// The component's size, in MiB.
    pub component_mib: f64,
    /// Seconds the SDK's build step took in this bench (absent when cached or given).
    pub build_s: Option<f64>,
    /// Load (compile), instantiate and one order, compile cache empty.
    pub cold_start_s: f64,
    /// The same with the compiled code cached, in a fresh engine.
    pub cached_start_s: f64,
    /// Mean fuel of one valid order on a warm instance.
    pub fuel_per_entry: f64,
    /// Linear memory and tables of one instance after the orders, in MiB.
    pub instance_mib: f64,
    /// Peak RSS of the pipeline run minus the RSS before the plugin was
    /// loaded: what the plugin (compiled code, `concurrency` instances,
    /// buffers) adds to the host, in MiB.
    pub host_rss_mib: f64,
    /// Instances the pipeline run used (`concurrency`).
    pub concurrency: usize,
    /// The pipeline run (entries/s, CPU s/M, ...).
    pub run: Run,
    /// Entries/s relative to the Rust run of the same bench.
    pub vs_rust: Option<f64>,
}

/// Orders the fuel figure averages over (after a first, warming one).
const FUEL_SAMPLES: u64 = 200;

/// Measures one language: starts, fuel, then `target` entries from `stream`.
pub async fn run(
    url: &str,
    stream: &str,
    guest: &GuestComponent,
    target: u64,
    tuning: Tuning,
) -> Result<GuestRun> {
    let name = format!("guest-{}", guest.lang.name());
    let component_mib = std::fs::metadata(&guest.path)
        .with_context(|| format!("cannot read {}", guest.path.display()))?
        .len() as f64
        / (1 << 20) as f64;
    let cache = tempfile::tempdir().context("cannot create a temp dir")?;
    let mut plugin = bench_plugin(&name, &guest.path, stream, tuning);
    // Instances of Python and JS take a while to create; do not let the
    // claimer hand entries out again meanwhile.
    plugin.claim.min_idle_ms = 600_000;
    plugin.isolation = Isolation::Reuse;

    eprintln!(
        "guest {}: cold start (empty compile cache) ...",
        guest.lang.name()
    );
    let (cold_start, _) = start(guest, &plugin, cache.path()).await?;
    eprintln!("guest {}: cached start ...", guest.lang.name());
    let (cached_start, mut invoker) = start(guest, &plugin, cache.path()).await?;
    let (mut fuel, mut memory) = (0u64, 0usize);
    for i in 1..=FUEL_SAMPLES {
        let report = invoker.invoke(&order(i)).await?;
        if report.outcome != streamhost::Outcome::Ok {
            return Err(anyhow!(
                "{name}: order {i} came to {:?}; the validator disagrees with the workload",
                report.outcome
            ));
        }
        fuel += report.fuel;
        memory = memory.max(report.peak_memory_bytes);
    }
    drop(invoker);

    let concurrency = plugin.concurrency;
    let mut config = bench_config(url, plugin);
    config.cache = CacheConfig {
        enabled: true,
        dir: Some(cache.path().to_owned()),
    };
    let rss_before = current_rss();
    let host = Host::load(config).await?;
    eprintln!(
        "guest {}: {target} entries through the host pipeline ...",
        guest.lang.name()
    );
    let what = format!("order validator in {}", guest.lang.name());
    let run = drive(&name, &what, host, url, stream, target, None).await?;
    let host_rss_mib = (run.peak_rss_mib - rss_before as f64 / (1 << 20) as f64).max(0.0);
    Ok(GuestRun {
        lang: guest.lang,
        component_mib,
        build_s: guest.build_s,
        cold_start_s: cold_start.as_secs_f64(),
        cached_start_s: cached_start.as_secs_f64(),
        fuel_per_entry: fuel as f64 / FUEL_SAMPLES as f64,
        instance_mib: memory as f64 / (1 << 20) as f64,
        host_rss_mib,
        concurrency,
        run,
        vs_rust: None,
    })
}

/// Valid order `i` as the pipeline would hand it over.
fn order(i: u64) -> Message {
    let id = format!("{i}-0");
    Message {
        source: Source::Stream(StreamEntry {
            name: "bench".into(),
            id: id.clone(),
        }),
        id,
        fields: vec![Field {
            name: "data".into(),
            value: order_json(i).into_bytes(),
        }],
        attempt: 1,
    }
}

/// A fresh engine on the compile cache `cache`: load the component,
/// instantiate it and run order 0; returns the time that took.
async fn start(
    guest: &GuestComponent,
    plugin: &streamhost::config::PluginConfig,
    cache: &Path,
) -> Result<(Duration, Invoker)> {
    let started = Instant::now();
    let options = EngineOptions {
        max_instances: 4,
        cache_dir: Some(cache.to_owned()),
        ..EngineOptions::default()
    }
    .fitting(&plugin.limits);
    let engine = WasmEngine::new(&options)?;
    let (path, name, limits) = (
        guest.path.clone(),
        plugin.name.clone(),
        plugin.limits.clone(),
    );
    let loaded = tokio::task::spawn_blocking(move || {
        LoadedPlugin::load_file(&engine, &name, &path, &limits)
    })
    .await
    .context("the loading thread failed")??;
    let mut invoker = Invoker::new(loaded);
    let first = invoker.invoke(&order(0)).await?;
    if first.outcome != streamhost::Outcome::Ok {
        return Err(anyhow!(
            "guest {}: the first order came to {:?}",
            guest.lang.name(),
            first.outcome
        ));
    }
    Ok((started.elapsed(), invoker))
}
