//! `streamhost bench`: measures the host against a native handler and a
//! hand-written consumer on a private redis-server, prints a table, and
//! optionally writes the same figures as JSON. With `--guest`, the order
//! validator in Rust, Python and JS side by side; this finds or builds
//! their components.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::bench::guests::{GuestComponent, GuestLang};
use crate::bench::{self, BenchOptions, RunKind};
use crate::bundled;
use streamhost::local_cluster::LocalCluster;
use streamhost::local_redis::LocalRedis;
use streamhost_build_support::guests::{self as build_guests, Lang};

use super::BadInput;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Entries pre-filled and consumed by the wasm and native runs.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Entries for the slower runs (hand-written, per-message); capped at --entries.
    #[arg(long, default_value_t = 200_000)]
    pub slow_entries: u64,
    /// Entries per second offered in the latency run; several rates
    /// (comma-separated) give one latency row each.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000, 100_000])]
    pub latency_rate: Vec<u64>,
    /// Seconds the latency run records.
    #[arg(long, default_value_t = 5.0)]
    pub latency_secs: f64,
    /// Use this Redis instead of starting a private redis-server (only keys
    /// named `streamhost-bench:*` are written, and deleted afterwards).
    #[arg(long)]
    pub redis: Option<String>,
    /// Which runs to do, comma-separated (e.g. `wasm,native` while profiling;
    /// default: all, or none when `--guest` is given).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub runs: Option<Vec<RunKind>>,
    /// The order validator in these languages, side by side (comma-separated):
    /// start times, fuel per entry, then `--entries` through the pipeline each.
    /// Python and JS are built from this checkout's `tests/guests/` with
    /// componentize-py / componentize-js (cached by their sources).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub guest: Vec<GuestLang>,
    /// Use this component for a `--guest` language instead of building it
    /// (`LANG=PATH`, repeatable).
    #[arg(long, value_name = "LANG=PATH", value_parser = parse_override)]
    pub guest_component: Vec<(GuestLang, PathBuf)>,
    /// Also run the `wasm` run on a private Redis Cluster (3 masters, 3
    /// replicas), the stream split into each of `--cluster-shards` shards
    /// (default runs with it: `wasm`, the single-node figure beside them).
    #[arg(long)]
    pub cluster: bool,
    /// Shards of the stream in the `--cluster` runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 3, 6], requires = "cluster")]
    pub cluster_shards: Vec<u32>,
    /// Try this `batch` instead of the default in the pipeline runs.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Try this `concurrency` instead of the default in the pipeline runs.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Try this `limits.metering` (`fuel`, the default, or `epoch-only`) in the Wasm runs.
    #[arg(long, value_parser = parse_metering)]
    pub metering: Option<streamhost::config::Metering>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn parse_metering(s: &str) -> Result<streamhost::config::Metering, String> {
    match s {
        "fuel" => Ok(streamhost::config::Metering::Fuel),
        "epoch-only" => Ok(streamhost::config::Metering::EpochOnly),
        other => Err(format!("{other:?}: expected fuel or epoch-only")),
    }
}

/// Runs the benchmark and prints its table.
pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.entries == 0
        || args.slow_entries == 0
        || args.latency_rate.is_empty()
        || args.latency_rate.contains(&0)
    {
        anyhow::bail!(super::BadInput(
            "--entries, --slow-entries and --latency-rate must be at least 1".into()
        ));
    }
    if !(args.latency_secs.is_finite() && args.latency_secs > 0.0) {
        anyhow::bail!(super::BadInput(
            "--latency-secs must be a positive number of seconds".into()
        ));
    }
    // Before starting anything: a missing toolchain ends the bench at once.
    let scratch = tempfile::tempdir().context("cannot create a temp dir")?;
    let guests = components(
        &args.guest,
        &args.guest_component,
        &super::new::sdk_root(),
        scratch.path(),
    )?;
    let max_shards = streamhost::config::MAX_SHARDS;
    if args
        .cluster_shards
        .iter()
        .any(|&s| s == 0 || s > max_shards)
    {
        anyhow::bail!(super::BadInput(format!(
            "--cluster-shards must be between 1 and {max_shards}"
        )));
    }
    let runs = match args.runs.clone() {
        Some(runs) => runs,
        None if args.cluster => vec![RunKind::Wasm],
        None if !guests.is_empty() => Vec::new(),
        None => RunKind::ALL.to_vec(),
    };
    // The private server (if any) lives until the report is written.
    let (redis_url, _private) = match args.redis.clone() {
        Some(url) => (
            super::redis_endpoint(Some(&url), None)?.url().to_owned(),
            None,
        ),
        None => {
            let server = tokio::task::spawn_blocking(LocalRedis::start)
                .await
                .context("starting redis-server panicked")??;
            (server.url(), Some(server))
        }
    };
    eprintln!("Redis: {}", streamhost::config::redact(&redis_url));
    let cluster = if args.cluster {
        eprintln!("starting a private Redis Cluster (3 masters, 3 replicas) ...");
        let cluster = tokio::task::spawn_blocking(LocalCluster::start)
            .await
            .context("starting the Redis Cluster panicked")??;
        Some(cluster)
    } else {
        None
    };
    let options = BenchOptions {
        redis_url,
        entries: args.entries,
        slow_entries: args.slow_entries,
        latency_rates: args.latency_rate,
        latency_duration: Duration::from_secs_f64(args.latency_secs),
        runs,
        guests,
        cluster_seeds: cluster.as_ref().map(LocalCluster::urls).unwrap_or_default(),
        cluster_shards: args.cluster_shards,
        tuning: bench::pipeline::Tuning {
            batch: args.batch,
            concurrency: args.concurrency,
            metering: args.metering,
        },
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let report = bench::run(&options).await?;
    println!("{report}");
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `LANG=PATH` of `--guest-component`.
fn parse_override(arg: &str) -> Result<(GuestLang, PathBuf), String> {
    let (lang, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected LANG=PATH, e.g. python=validator.wasm"))?;
    let lang = match lang {
        "rust" => GuestLang::Rust,
        "python" => GuestLang::Python,
        "js" => GuestLang::Js,
        other => return Err(format!("{other:?}: LANG is rust, python or js")),
    };
    Ok((lang, PathBuf::from(path)))
}

/// Finds or builds each language's validator: given with
/// `--guest-component`; Rust written from this binary into `scratch`;
/// Python and JS componentized from the checkout at `root` into
/// `~/.cache/streamhost-guests` unless an identical build is there already.
fn components(
    langs: &[GuestLang],
    overrides: &[(GuestLang, PathBuf)],
    root: &Path,
    scratch: &Path,
) -> anyhow::Result<Vec<GuestComponent>> {
    let mut out = Vec::new();
    for &lang in langs {
        if out.iter().any(|g: &GuestComponent| g.lang == lang) {
            continue;
        }
        let (path, build_s) = if let Some((_, path)) = overrides.iter().find(|(l, _)| *l == lang) {
            if !path.is_file() {
                return Err(BadInput(format!(
                    "--guest-component {}={}: no such file",
                    lang.name(),
                    path.display()
                ))
                .into());
            }
            (path.clone(), None)
        } else {
            match lang {
                GuestLang::Rust => {
                    let path = scratch.join("order_validator.wasm");
                    std::fs::write(&path, bundled::ORDER_VALIDATOR)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    (path, None)
                }
                GuestLang::Python => build(Lang::Python, root)?,
                GuestLang::Js => build(Lang::Js, root)?,
            }
        };
        out.push(GuestComponent {
            lang,
            path,
            build_s,
        });
    }
    Ok(out)
}

/// Componentizes `tests/guests/<lang>/order-validator`, or finds it cached;
/// returns the component and, when it was built now, how long that took.
fn build(lang: Lang, root: &Path) -> anyhow::Result<(PathBuf, Option<f64>)> {
    let dir = root
        .join("tests/guests")
        .join(lang.name())
        .join("order-validator");
    if !dir.is_dir() {
        return Err(BadInput(format!(
            "{} not found: --guest {} builds the validator from a streamhost checkout \
             (set STREAMHOST_SDK_ROOT to one), or give --guest-component {}=PATH",
            dir.display(),
            lang.name(),
            lang.name()
        ))
        .into());
    }
    // Beside the compile cache, not in it: wasmtime cleans its own directory.
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("streamhost-guests");
    let id = format!("bench-{}-order-validator", lang.name());
    let before = std::fs::read_dir(&cache).map_or(0, Iterator::count);
    eprintln!(
        "guest {}: componentizing {} (cached by its sources) ...",
        lang.name(),
        dir.display()
    );
    let started = std::time::Instant::now();
    let path = build_guests::build_cached(lang, root, &dir, &id, &cache).map_err(|e| {
        BadInput(format!(
            "--guest {} needs its toolchain to build the validator: {e}",
            lang.name()
        ))
    })?;
    // A new file in the cache: built now, not found.
    let built = std::fs::read_dir(&cache).map_or(0, Iterator::count) > before;
    Ok((path, built.then(|| started.elapsed().as_secs_f64())))
}
