//! Runs of the real host pipeline ([`Host`]) over the pre-filled stream, each
//! on a fresh consumer group, until a target number of entries is acked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::report::Run;
use super::usage::Meter;
use super::{STALL_TIMEOUT, stalled};
use crate::bundled;
use anyhow::{Result, anyhow};
use streamhost::Host;
use streamhost::config::{Config, Isolation, LimitsConfig, Metering, PluginConfig, RedisConfig};
use streamhost::engine_options;
use streamhost::plugin::{LoadedPlugin, WasmEngine};

/// How often the driver looks at the ack counter.
const POLL: Duration = Duration::from_millis(2);

/// The bundled `order-validator` component, loaded from a file as `streamhost
/// run` would.
pub async fn wasm(
    url: &str,
    stream: &str,
    target: u64,
    isolation: Isolation,
    tuning: Tuning,
) -> Result<Run> {
    let (name, what) = match isolation {
        Isolation::Reuse => ("wasm", "order-validator component, instance reused"),
        Isolation::PerMessage => (
            "per-message",
            "order-validator component, fresh instance per entry",
        ),
    };
    let dir = tempfile::tempdir().map_err(|e| anyhow!("cannot create a temp dir: {e}"))?;
    let component = dir.path().join("order_validator.wasm");
    std::fs::write(&component, bundled::ORDER_VALIDATOR)
        .map_err(|e| anyhow!("cannot write {}: {e}", component.display()))?;
    let mut plugin = bench_plugin(name, &component, stream, tuning);
    plugin.isolation = isolation;
    let config = bench_config(url, plugin);
    let host = Host::load(config).await?;
    drive(name, what, host, url, stream, target, None).await
}

/// The same rules as a native handler through the same pipeline.
pub async fn native(url: &str, stream: &str, target: u64, tuning: Tuning) -> Result<Run> {
    let name = "native";
    let config = bench_config(
        url,
        bench_plugin(name, "native:order-validator", stream, tuning),
    );
    // Native instances still get a store, so the pipeline's bookkeeping is the same.
    let engine = WasmEngine::new(&engine_options(&config))?;
    let loaded = LoadedPlugin::native(&engine, name, super::native::validate_order);
    let host = Host::with_plugins(config, vec![Arc::new(loaded)])?;
    drive(
        name,
        "order-validator rules as a native Rust handler",
        host,
        url,
        stream,
        target,
        None,
    )
    .await
}

/// A plugin table with the product defaults, on its own group.
/// Overrides of the product defaults, to try settings (`None`: the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning {
    /// `batch`: entries per `XREADGROUP`.
    pub batch: Option<usize>,
    /// `concurrency`: handler instances in parallel.
    pub concurrency: Option<usize>,
    /// `limits.metering` of the Wasm runs.
    pub metering: Option<Metering>,
}

/// A plugin table with the product defaults (unless tuned), on its own group.
pub(crate) fn bench_plugin(
    name: &str,
    component: impl Into<std::path::PathBuf>,
    stream: &str,
    tuning: Tuning,
) -> PluginConfig {
    let defaults = PluginConfig::new(name, component, stream);
    PluginConfig {
        group: Some(format!("bench-{name}")),
        consumer: Some("bench".to_owned()),
        batch: tuning.batch.unwrap_or(defaults.batch),
        concurrency: tuning.concurrency.unwrap_or(defaults.concurrency),
        limits: LimitsConfig {
            metering: tuning.metering.unwrap_or(defaults.limits.metering),
            ..defaults.limits.clone()
        },
        ..defaults
    }
}

pub(crate) fn bench_config(url: &str, plugin: PluginConfig) -> Config {
    Config {
        redis: RedisConfig {
            url: url.to_owned(),
            ..RedisConfig::default()
        },
        plugins: vec![plugin],
        ..Config::default()
    }
}

/// Runs `host` until `target` entries are acked; the run's time ends at that
/// ack, before the host drains and stops. `publisher` feeds a Pub/Sub run
/// once the host is subscribed (on a connection of its own, in the meter).
pub(crate) async fn drive(
    name: &str,
    what: &str,
    host: Host,
    url: &str,
    stream: &str,
    target: u64,
    publisher: Option<Box<super::queues::Publisher>>,
) -> Result<Run> {
    let watched = Watched {
        streams: vec![stream.to_owned()],
        servers: vec![url.to_owned()],
    };
    drive_watched(name, what, host, &watched, target, publisher).await
}

/// What a run counts: the plugin's acks on these streams (one per shard),
/// the CPU of these Redis servers (a cluster's nodes).
pub(crate) struct Watched {
    /// The streams whose acks add up to the run's entries.
    pub streams: Vec<String>,
    /// Every Redis server the run uses; the first also publishes.
    pub servers: Vec<String>,
}

/// [`drive`] over several streams and servers.
pub(crate) async fn drive_watched(
    name: &str,
    what: &str,
    host: Host,
    watched: &Watched,
    target: u64,
    publisher: Option<Box<super::queues::Publisher>>,
) -> Result<Run> {
    let plugins: Vec<_> = watched
        .streams
        .iter()
        .map(|stream| host.metrics().plugin(name, stream))
        .collect();
    let sum = |count: fn(&streamhost::PluginMetrics) -> u64| plugins.iter().map(count).sum::<u64>();
    let mut conns = Vec::with_capacity(watched.servers.len());
    for server in &watched.servers {
        conns.push(
            redis::Client::open(server.as_str())?
                .get_multiplexed_async_connection()
                .await?,
        );
    }
    let url = watched
        .servers
        .first()
        .ok_or_else(|| anyhow!("bench run {name:?}: no Redis server"))?;
    let shutdown = CancellationToken::new();
    let meter = Meter::start_all(&mut conns).await;
    let mut running = tokio::spawn(host.run(shutdown.clone()));
    let publishing = match publisher {
        Some(publisher) => {
            let mut conn = redis::Client::open(url.as_str())?
                .get_multiplexed_async_connection()
                .await?;
            Some(tokio::spawn(
                async move { publisher.publish(&mut conn).await },
            ))
        }
        None => None,
    };
    let (mut last, mut progressed) = (0, Instant::now());
    loop {
        let acked = sum(|m| m.acked.get());
        if acked >= target {
            break;
        }
        if acked != last {
            (last, progressed) = (acked, Instant::now());
        } else if progressed.elapsed() > STALL_TIMEOUT {
            shutdown.cancel();
            let _ = running.await;
            return Err(stalled(name, acked, target));
        }
        tokio::select! {
            done = &mut running => {
                let outcome = done.map_err(|e| anyhow!("host task failed: {e}"))?;
                outcome?;
                return Err(anyhow!("bench run {name:?}: host stopped early"));
            }
            _ = tokio::time::sleep(POLL) => {}
        }
    }
    let elapsed = meter.elapsed();
    let usage = meter.finish_all(&mut conns, elapsed).await;
    if let Some(publishing) = publishing {
        publishing
            .await
            .map_err(|e| anyhow!("publisher task failed: {e}"))??;
    }
    shutdown.cancel();
    running
        .await
        .map_err(|e| anyhow!("host task failed: {e}"))??;
    let rejected = sum(|m| m.dead_lettered.get() + m.retried.get());
    if rejected > 0 {
        return Err(anyhow!(
            "bench run {name:?}: {rejected} valid orders were not accepted; the handler disagrees with the workload"
        ));
    }
    Ok(Run::new(name, what.to_owned(), target, &usage))
}
