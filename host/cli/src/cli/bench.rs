//! `streamhost bench`: measures the host against a native handler and a
//! hand-written consumer on a private redis-server, prints a table, and
//! optionally writes the same figures as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::bench::{self, BenchOptions, RunKind};
use streamhost::local_redis::LocalRedis;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Entries pre-filled and consumed by the wasm and native runs.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// Entries for the slower runs (hand-written, per-message); capped at --entries.
    #[arg(long, default_value_t = 200_000)]
    pub slow_entries: u64,
    /// Entries per second offered in the latency run.
    #[arg(long, default_value_t = 10_000)]
    pub latency_rate: u64,
    /// Seconds the latency run records.
    #[arg(long, default_value_t = 5.0)]
    pub latency_secs: f64,
    /// Use this Redis instead of starting a private redis-server (only keys
    /// named `streamhost-bench:*` are written, and deleted afterwards).
    #[arg(long)]
    pub redis: Option<String>,
    /// Which runs to do, comma-separated (e.g. `wasm,native` while profiling).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = RunKind::ALL)]
    pub runs: Vec<RunKind>,
    /// Try this `batch` instead of the default in the pipeline runs.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Try this `concurrency` instead of the default in the pipeline runs.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs the benchmark and prints its table.
pub async fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.entries == 0 || args.slow_entries == 0 || args.latency_rate == 0 {
        anyhow::bail!(super::BadInput(
            "--entries, --slow-entries and --latency-rate must be at least 1".into()
        ));
    }
    if !(args.latency_secs.is_finite() && args.latency_secs > 0.0) {
        anyhow::bail!(super::BadInput(
            "--latency-secs must be a positive number of seconds".into()
        ));
    }
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
    let options = BenchOptions {
        redis_url,
        entries: args.entries,
        slow_entries: args.slow_entries,
        latency_rate: args.latency_rate,
        latency_duration: Duration::from_secs_f64(args.latency_secs),
        runs: args.runs,
        tuning: bench::pipeline::Tuning {
            batch: args.batch,
            concurrency: args.concurrency,
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
