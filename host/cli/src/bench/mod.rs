//! `streamhost bench`: the runs that judge the host's speed, side by side on
//! one Redis and one pre-filled stream, each on a fresh consumer group.
//!
//! 1. `wasm`: the bundled `order-validator` component through [`streamhost::Host`];
//! 2. `native`: the same pipeline and rules as a native Rust handler;
//! 3. `hand-written`: `XREADGROUP COUNT 10`, one `XACK` per entry, serde_json;
//! 4. `per-message`: (1) with a fresh instance per entry;
//! 5. `latency`: (1) fed at fixed rates, produce-to-handled latency (one row per rate);
//! 6. `list` / `hand-written-list`: (1) on a list queue, and a `BRPOP` loop;
//! 7. `sorted-set` / `hand-written-zset`: (1) on a sorted-set queue, and a `ZPOPMIN` loop;
//! 8. `pubsub`: (1) subscribed to a channel the orders are published on;
//! 9. `--guest`: the order validator in Rust, Python and JS ([`guests`]);
//! 10. `--cluster`: (1) on a private Redis Cluster, the stream in 1, 3 and 6 shards ([`cluster`]).

pub mod cluster;
pub mod guests;
pub mod handwritten;
pub mod latency;
pub mod native;
pub mod pipeline;
pub mod queues;
pub mod report;
pub mod usage;
pub mod workload;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use report::Report;

use anyhow::{Error, Result, anyhow};
use streamhost::config::Isolation;

/// What to run, and how much.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The Redis to use (the caller owns it; the bench only touches its own keys).
    pub redis_url: String,
    /// Entries pre-filled and consumed by the wasm and native runs.
    pub entries: u64,
    /// Entries for the slow runs (hand-written, per-message), at most `entries`.
    pub slow_entries: u64,
    /// Entries per second produced in the latency run: one row per rate.
    pub latency_rates: Vec<u64>,
    /// How long the latency run records.
    pub latency_duration: Duration,
    /// Which runs to do (always in the order of [`RunKind::ALL`]).
    pub runs: Vec<RunKind>,
    /// The order validator in these languages, after the runs.
    pub guests: Vec<guests::GuestComponent>,
    /// Seeds of the Redis Cluster of the `--cluster` runs (none: no such runs).
    pub cluster_seeds: Vec<String>,
    /// Shards of the stream in each `--cluster` run (one row each).
    pub cluster_shards: Vec<u32>,
    /// Settings to try instead of the product defaults.
    pub tuning: pipeline::Tuning,
    /// The command line, recorded in the report.
    pub command: String,
}

/// One of the benchmark's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunKind {
    /// The host pipeline with the order rules as a native Rust handler.
    Native,
    /// The host pipeline with the `order-validator` component.
    Wasm,
    /// `XREADGROUP COUNT 10`, serde_json, one `XACK` per entry.
    HandWritten,
    /// `wasm` with a fresh instance per entry.
    PerMessage,
    /// `wasm` fed at a fixed rate, produce-to-handled latency.
    Latency,
    /// `wasm` on a list queue.
    List,
    /// `BRPOP`, serde_json: the list queue's hand-written peer.
    HandWrittenList,
    /// `wasm` on a sorted-set queue (priority order).
    SortedSet,
    /// `ZPOPMIN`, serde_json: the sorted-set queue's hand-written peer.
    HandWrittenZset,
    /// `wasm` subscribed to a Pub/Sub channel.
    Pubsub,
}

impl RunKind {
    /// Every run, in the order they run (the baselines first).
    pub const ALL: [RunKind; 10] = [
        RunKind::Native,
        RunKind::Wasm,
        RunKind::HandWritten,
        RunKind::PerMessage,
        RunKind::Latency,
        RunKind::List,
        RunKind::HandWrittenList,
        RunKind::SortedSet,
        RunKind::HandWrittenZset,
        RunKind::Pubsub,
    ];
}

/// Runs every benchmark in order and returns the figures. Keys are unique to
/// this run and deleted afterwards, so a shared server is not disturbed.
pub async fn run(options: &BenchOptions) -> Result<Report> {
    let tag = format!("streamhost-bench:{}:{}", std::process::id(), now_micros());
    let stream = format!("{tag}:orders");
    let client = redis::Client::open(options.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut report = Report::new(options, &mut conn).await?;

    if options.runs.iter().any(|k| *k != RunKind::Latency) || !options.guests.is_empty() {
        eprintln!("pre-filling {} entries into {stream} ...", options.entries);
        workload::prefill(&mut conn, &stream, options.entries).await?;
    }
    let slow = options.slow_entries.min(options.entries);
    let result = run_all(options, &mut report, &tag, slow).await;
    let (list, zset) = (format!("{tag}:jobs"), format!("{tag}:render"));
    let _: std::result::Result<(), _> = redis::cmd("DEL")
        .arg(&stream)
        .arg(&list)
        .arg(&zset)
        .query_async(&mut conn)
        .await;
    result?;
    report.finish();
    Ok(report)
}

async fn run_all(options: &BenchOptions, report: &mut Report, tag: &str, slow: u64) -> Result<()> {
    let url = options.redis_url.as_str();
    let stream = format!("{tag}:orders");
    let n = options.entries;
    for kind in RunKind::ALL
        .into_iter()
        .filter(|k| options.runs.contains(k))
    {
        if kind == RunKind::Latency {
            for &rate in &options.latency_rates {
                let duration = options.latency_duration;
                eprintln!("latency: {rate}/s for {duration:?} ...");
                let stream = format!("{tag}:latency:{rate}");
                report.push(latency::run(url, &stream, rate, duration, options.tuning).await?);
            }
            continue;
        }
        let row = match kind {
            RunKind::Native => {
                eprintln!("native: {n} entries through the host pipeline, native handler ...");
                pipeline::native(url, &stream, n, options.tuning).await?
            }
            RunKind::Wasm => {
                eprintln!(
                    "wasm: {n} entries through the host pipeline, order-validator component ..."
                );
                pipeline::wasm(url, &stream, n, Isolation::Reuse, options.tuning).await?
            }
            RunKind::HandWritten => {
                eprintln!("hand-written: {slow} entries, COUNT 10, one XACK per entry ...");
                handwritten::run(url, &stream, slow).await?
            }
            RunKind::PerMessage => {
                eprintln!("per-message: {slow} entries, a fresh instance per entry ...");
                pipeline::wasm(url, &stream, slow, Isolation::PerMessage, options.tuning).await?
            }
            RunKind::Latency => unreachable!("latency rows are pushed above"),
            RunKind::List
            | RunKind::HandWrittenList
            | RunKind::SortedSet
            | RunKind::HandWrittenZset => {
                let queue = match kind {
                    RunKind::List | RunKind::HandWrittenList => queues::Queue::List,
                    _ => queues::Queue::SortedSet,
                };
                let key = match queue {
                    queues::Queue::List => format!("{tag}:jobs"),
                    queues::Queue::SortedSet => format!("{tag}:render"),
                };
                let mut conn = redis::Client::open(url)?
                    .get_multiplexed_async_connection()
                    .await?;
                let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
                let count = if matches!(kind, RunKind::List | RunKind::SortedSet) {
                    n
                } else {
                    slow
                };
                eprintln!("{kind:?}: {count} items ...");
                queues::prefill(&mut conn, queue, &key, count).await?;
                if matches!(kind, RunKind::List | RunKind::SortedSet) {
                    queues::host(url, queue, &key, count, options.tuning).await?
                } else {
                    queues::hand_written(url, queue, &key, count).await?
                }
            }
            RunKind::Pubsub => {
                eprintln!("pubsub: {slow} messages published to the subscribed host ...");
                queues::pubsub(url, &format!("{tag}:live"), slow, options.tuning).await?
            }
        };
        report.push(row);
    }
    for guest in &options.guests {
        report
            .guests
            .push(guests::run(url, &stream, guest, n, options.tuning).await?);
    }
    if !options.cluster_seeds.is_empty() {
        for &shards in &options.cluster_shards {
            eprintln!("cluster: {n} entries over {shards} shard(s) of a Redis Cluster ...");
            let stream = format!("{tag}:cluster-orders:{shards}");
            report.push(
                cluster::run(&options.cluster_seeds, &stream, shards, n, options.tuning).await?,
            );
        }
    }
    Ok(())
}

/// Microseconds since the Unix epoch: the produce timestamp carried by
/// latency-run entries, compared with the same clock when the handler returns.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Gives up on a run that makes no progress for this long.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The error for a run that stopped making progress.
pub(crate) fn stalled(run: &str, done: u64, target: u64) -> Error {
    anyhow!(
        "bench run {run:?} made no progress for {STALL_TIMEOUT:?} ({done} of {target} entries handled)"
    )
}
