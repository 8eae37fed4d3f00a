//! Runs over the other sources, each beside its hand-written peer: the
//! `order-validator` component on a list queue (vs a `BRPOP` loop), a
//! sorted-set queue (vs a `ZPOPMIN` loop) and Pub/Sub (the host subscribed,
//! the orders published as fast as one connection pipelines them). The
//! peers lose an item whenever they die between pop and handling; the host
//! does not (list, sorted set) — that is what the difference buys.

use std::time::Instant;

use redis::aio::MultiplexedConnection;

use super::pipeline::{Tuning, bench_config, bench_plugin, drive};
use super::report::Run;
use super::usage::Meter;
use super::workload::order_json;
use super::{STALL_TIMEOUT, stalled};
use crate::bundled;
use anyhow::{Result, anyhow};
use streamhost::Host;
use streamhost::config::{PluginConfig, SortedSetOrder};

/// Commands per pipelined round trip while filling.
const FILL_PIPELINE: u64 = 1_000;

/// Which queue a run fills and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// A list (`LPUSH`).
    List,
    /// A sorted set (`ZADD`, score = order number).
    SortedSet,
}

/// Fills `key` with `count` orders.
pub async fn prefill(
    conn: &mut MultiplexedConnection,
    queue: Queue,
    key: &str,
    count: u64,
) -> Result<()> {
    let mut pipe = redis::pipe();
    for i in 0..count {
        match queue {
            Queue::List => pipe.cmd("LPUSH").arg(key).arg(order_json(i)).ignore(),
            Queue::SortedSet => pipe.cmd("ZADD").arg(key).arg(i).arg(order_json(i)).ignore(),
        };
        if (i + 1) % FILL_PIPELINE == 0 || i + 1 == count {
            pipe.query_async::<()>(conn).await?;
            pipe.clear();
        }
    }
    Ok(())
}

async fn component_plugin(
    name: &str,
    dir: &tempfile::TempDir,
    tuning: Tuning,
) -> Result<PluginConfig> {
    let component = dir.path().join("order_validator.wasm");
    std::fs::write(&component, bundled::ORDER_VALIDATOR)
        .map_err(|e| anyhow!("cannot write {}: {e}", component.display()))?;
    let mut plugin = bench_plugin(name, &component, "", tuning);
    plugin.stream.clear();
    plugin.group = None;
    Ok(plugin)
}

/// The component on a pre-filled list or sorted set.
pub async fn host(url: &str, queue: Queue, key: &str, target: u64, tuning: Tuning) -> Result<Run> {
    let dir = tempfile::tempdir().map_err(|e| anyhow!("cannot create a temp dir: {e}"))?;
    let (name, what) = match queue {
        Queue::List => (
            "list",
            "order-validator component on a list queue (BLMOVE, processing list, LREM)",
        ),
        Queue::SortedSet => (
            "sorted-set",
            "order-validator component on a sorted-set queue (pop + in-flight script)",
        ),
    };
    let mut plugin = component_plugin(name, &dir, tuning).await?;
    match queue {
        Queue::List => plugin.list = Some(key.to_owned()),
        Queue::SortedSet => {
            plugin.sorted_set = Some(key.to_owned());
            plugin.order = Some(SortedSetOrder::Priority);
        }
    }
    let host = Host::load(bench_config(url, plugin)).await?;
    drive(name, what, host, url, key, target, None).await
}

/// The component subscribed to `channel`, fed `target` published orders.
pub async fn pubsub(url: &str, channel: &str, target: u64, tuning: Tuning) -> Result<Run> {
    let dir = tempfile::tempdir().map_err(|e| anyhow!("cannot create a temp dir: {e}"))?;
    let mut plugin = component_plugin("pubsub", &dir, tuning).await?;
    plugin.subscribe = Some(vec![channel.to_owned()]);
    let host = Host::load(bench_config(url, plugin)).await?;
    drive(
        "pubsub",
        "order-validator component subscribed to a channel (at-most-once)",
        host,
        url,
        channel,
        target,
        Some(Box::new(Publisher {
            channel: channel.to_owned(),
            target,
        })),
    )
    .await
}

/// Publishes the orders once the host is subscribed.
pub struct Publisher {
    channel: String,
    target: u64,
}

impl Publisher {
    /// Waits for a subscriber, then publishes every order.
    pub async fn publish(&self, conn: &mut MultiplexedConnection) -> Result<()> {
        let started = Instant::now();
        loop {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(&self.channel)
                .query_async(conn)
                .await?;
            if counts.iter().any(|(_, n)| *n > 0) {
                break;
            }
            if started.elapsed() > STALL_TIMEOUT {
                return Err(anyhow!("bench run \"pubsub\": the host never subscribed"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut pipe = redis::pipe();
        for i in 0..self.target {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(order_json(i))
                .ignore();
            if (i + 1) % FILL_PIPELINE == 0 || i + 1 == self.target {
                pipe.query_async::<()>(conn).await?;
                pipe.clear();
            }
        }
        Ok(())
    }
}

/// The hand-written peer: `BRPOP` (list) or `ZPOPMIN` (sorted set) one item
/// at a time, parse it with serde_json, nothing else — the loop that loses
/// the item when the worker dies between pop and handling.
pub async fn hand_written(url: &str, queue: Queue, key: &str, target: u64) -> Result<Run> {
    let (name, what) = match queue {
        Queue::List => (
            "hand-written-list",
            "BRPOP one item, serde_json::Value parse (loses it on a crash)",
        ),
        Queue::SortedSet => (
            "hand-written-zset",
            "ZPOPMIN one member, serde_json::Value parse (loses it on a crash)",
        ),
    };
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let meter = Meter::start(&mut conn).await;
    let (mut done, mut progressed) = (0u64, Instant::now());
    while done < target {
        let item: Option<Vec<u8>> = match queue {
            Queue::List => {
                let popped: Option<(String, Vec<u8>)> = redis::cmd("BRPOP")
                    .arg(key)
                    .arg(0.1)
                    .query_async(&mut conn)
                    .await?;
                popped.map(|(_, v)| v)
            }
            Queue::SortedSet => {
                let popped: Vec<(Vec<u8>, f64)> = redis::cmd("ZPOPMIN")
                    .arg(key)
                    .query_async(&mut conn)
                    .await?;
                popped.into_iter().next().map(|(m, _)| m)
            }
        };
        match item {
            Some(data) => {
                let order: serde_json::Value = serde_json::from_slice(&data)
                    .map_err(|e| anyhow!("{name}: an item is not JSON: {e}"))?;
                std::hint::black_box(&order);
                done += 1;
                progressed = Instant::now();
            }
            None if progressed.elapsed() > STALL_TIMEOUT => {
                return Err(stalled(name, done, target));
            }
            None => {}
        }
    }
    let elapsed = meter.elapsed();
    let usage = meter.finish(&mut conn, elapsed).await;
    Ok(Run::new(name, what.to_owned(), done, &usage))
}
