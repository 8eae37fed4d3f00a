//! The latency run: entries produced at a fixed rate into an empty stream,
//! consumed by the `order-validator` component through the host pipeline.
//!
//! Latency is produce-to-handled: from the produce timestamp the producer puts
//! in field `ts` (microseconds since the epoch, taken just before the `XADD`
//! round trip) to the moment the handler's call returned, read by an
//! invocation tap on the same clock in the same process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::pipeline::{Tuning, bench_config, bench_plugin};
use super::report::{Latency, Run};
use super::usage::Meter;
use super::{STALL_TIMEOUT, now_micros, stalled, workload};
use crate::bundled;
use anyhow::{Result, anyhow};
use streamhost::Host;
use streamhost::engine_options;
use streamhost::plugin::{LoadedPlugin, Message, WasmEngine};

/// Produced before recording starts, so connection setup and the first
/// blocking read do not count.
const WARMUP: Duration = Duration::from_millis(500);
/// The producer's pacing tick.
const TICK: Duration = Duration::from_millis(1);
/// Most entries in one produce pipeline (a late tick catches up in several).
const MAX_PIPELINE: u64 = 1000;

/// Produce-to-handled latencies of entries stamped at or after `from`.
struct Recorder {
    from: AtomicU64,
    samples: Mutex<Vec<u64>>,
}

impl Recorder {
    fn observe(&self, msg: &Message) {
        let stamp = msg
            .fields
            .iter()
            .find(|f| f.name == "ts")
            .and_then(|f| std::str::from_utf8(&f.value).ok()?.parse::<u64>().ok());
        let Some(ts) = stamp else { return };
        if ts < self.from.load(Ordering::Relaxed) {
            return;
        }
        let latency = now_micros().saturating_sub(ts);
        if let Ok(mut samples) = self.samples.lock() {
            samples.push(latency);
        }
    }

    fn count(&self) -> usize {
        self.samples.lock().map_or(0, |s| s.len())
    }
}

/// Produces `rate` entries per second for `duration` and measures each one.
pub async fn run(
    url: &str,
    stream: &str,
    rate: u64,
    duration: Duration,
    tuning: Tuning,
) -> Result<Run> {
    let name = "latency";
    let recorder = Arc::new(Recorder {
        from: AtomicU64::new(u64::MAX),
        samples: Mutex::new(Vec::new()),
    });
    let config = bench_config(
        url,
        bench_plugin(name, "bundled:order-validator", stream, tuning),
    );
    let engine = WasmEngine::new(&engine_options(&config))?;
    let limits = config.plugins[0].limits.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        LoadedPlugin::load_bytes(
            &engine,
            name,
            bundled::ORDER_VALIDATOR,
            "the bundled order-validator",
            &limits,
        )
    })
    .await
    .map_err(|e| anyhow!("loading the bundled plugin panicked: {e}"))??;
    let tap = recorder.clone();
    let loaded = loaded.with_tap(Arc::new(move |msg, _| tap.observe(msg)));
    let host = Host::with_plugins(config, vec![Arc::new(loaded)])?;

    // A producer that fell behind (a loaded machine) catches up with large
    // pipelines: give them the stall bound, not redis-rs's 500 ms default.
    let patient = redis::AsyncConnectionConfig::new().set_response_timeout(Some(STALL_TIMEOUT));
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&patient)
        .await?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(host.run(shutdown.clone()));
    let result = measure(&mut conn, stream, rate, duration, &recorder).await;
    shutdown.cancel();
    running
        .await
        .map_err(|e| anyhow!("host task failed: {e}"))??;
    // Each rate has its stream; the bench's other keys are deleted by `run`.
    let _: std::result::Result<(), _> = redis::cmd("DEL").arg(stream).query_async(&mut conn).await;
    let (produced, usage) = result?;
    let samples = recorder
        .samples
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    let mut row = Run::new(
        name,
        format!(
            "order-validator component, {rate} entries/s offered for {duration:?}; produce-to-handled via a `ts` field"
        ),
        produced,
        &usage,
    );
    row.latency_ms = Latency::from_micros(samples);
    row.offered_per_sec = Some(rate);
    Ok(row)
}

/// Warms up, then produces and records for `duration`; returns how many
/// entries were recorded and what the window used.
async fn measure(
    conn: &mut MultiplexedConnection,
    stream: &str,
    rate: u64,
    duration: Duration,
    recorder: &Recorder,
) -> Result<(u64, super::usage::Usage)> {
    let warm = produce_paced(conn, stream, 0, rate, WARMUP).await?;
    recorder.from.store(now_micros(), Ordering::Relaxed);
    let meter = Meter::start(conn).await;
    let produced = produce_paced(conn, stream, warm, rate, duration).await?;
    let mut progressed = Instant::now();
    let mut last = 0;
    while (recorder.count() as u64) < produced {
        let seen = recorder.count();
        if seen != last {
            (last, progressed) = (seen, Instant::now());
        } else if progressed.elapsed() > STALL_TIMEOUT {
            return Err(stalled("latency", seen as u64, produced));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let usage = meter.finish(conn, duration).await;
    Ok((produced, usage))
}

/// Produces orders `first..` at `rate` per second for `duration`; every tick
/// sends what is due by then, so a late tick catches up instead of lowering
/// the rate. Returns how many it produced.
async fn produce_paced(
    conn: &mut MultiplexedConnection,
    stream: &str,
    first: u64,
    rate: u64,
    duration: Duration,
) -> Result<u64> {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    loop {
        ticks.tick().await;
        let elapsed = started.elapsed().min(duration);
        let mut due = ((elapsed.as_secs_f64() * rate as f64) as u64).saturating_sub(sent);
        while due > 0 {
            let n = due.min(MAX_PIPELINE);
            workload::produce_stamped(conn, stream, first + sent, n).await?;
            (sent, due) = (sent + n, due - n);
        }
        if elapsed >= duration {
            return Ok(sent);
        }
    }
}
