//! `bench --cluster`: the `wasm` run on a private Redis Cluster (3 masters,
//! 3 replicas), the orders spread over a stream of 1, 3 or 6 shards by
//! `shard_of` of their order number (the entries stay the single-node run's,
//! field `data` alone, so the rows compare). Host
//! CPU per entry compares with the single-node `wasm` run; Redis CPU is the
//! sum over every node, replicas included (replication is part of the cost).

use redis::aio::ConnectionLike;

use super::pipeline::{Tuning, Watched, bench_config, bench_plugin, drive_watched};
use super::report::Run;
use super::workload::order_json;
use crate::bundled;
use anyhow::{Result, anyhow};
use streamhost::Host;
use streamhost::config::{shard_key, shard_of};
use streamhost::connection::Endpoint;

/// `XADD`s per pipelined round trip while filling one shard.
const FILL_PIPELINE: usize = 1_000;

/// How long a connection waits for a reply while filling.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The component on `stream` split into `shards` shards of the cluster
/// reached through `seeds`, until `target` orders are acked.
pub async fn run(
    seeds: &[String],
    stream: &str,
    shards: u32,
    target: u64,
    tuning: Tuning,
) -> Result<Run> {
    let seed = seeds
        .first()
        .ok_or_else(|| anyhow!("bench --cluster: no cluster seed"))?;
    let name = format!("cluster-{shards}");
    let endpoint = Endpoint::cluster(seeds);
    let mut conn = endpoint.connect_once(REPLY_TIMEOUT).await?;
    fill(&mut conn, stream, shards, target).await?;
    let dir = tempfile::tempdir().map_err(|e| anyhow!("cannot create a temp dir: {e}"))?;
    let component = dir.path().join("order_validator.wasm");
    std::fs::write(&component, bundled::ORDER_VALIDATOR)
        .map_err(|e| anyhow!("cannot write {}: {e}", component.display()))?;
    let mut plugin = bench_plugin(&name, &component, stream, tuning);
    plugin.shards = Some(shards);
    let mut config = bench_config(seed, plugin);
    config.redis.cluster = true;
    config.redis.urls = seeds.to_vec();
    let host = Host::load(config).await?;
    let watched = Watched {
        streams: (0..shards).map(|i| shard_key(stream, i)).collect(),
        servers: seeds.to_vec(),
    };
    let what = format!(
        "order-validator component, Redis Cluster (3 masters + 3 replicas), {shards} shard(s), each with the plugin's concurrency"
    );
    let result = drive_watched(&name, &what, host, &watched, target, None).await;
    for shard in &watched.streams {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(shard).query_async(&mut conn).await;
    }
    result
}

/// Appends orders `0..count`, order `i` to shard `shard_of(i)`, one
/// pipeline per shard at a time (a shard's keys share one slot).
async fn fill(
    conn: &mut (impl ConnectionLike + Send),
    stream: &str,
    shards: u32,
    count: u64,
) -> Result<()> {
    let mut pipes: Vec<(redis::Pipeline, usize)> =
        (0..shards).map(|_| (redis::pipe(), 0)).collect();
    let shard_keys: Vec<String> = (0..shards).map(|i| shard_key(stream, i)).collect();
    for i in 0..count {
        let shard = shard_of(i.to_string().as_bytes(), shards) as usize;
        let (pipe, queued) = &mut pipes[shard];
        pipe.cmd("XADD")
            .arg(&shard_keys[shard])
            .arg("*")
            .arg("data")
            .arg(order_json(i))
            .ignore();
        *queued += 1;
        if *queued == FILL_PIPELINE {
            pipe.query_async::<()>(conn).await?;
            pipe.clear();
            *queued = 0;
        }
    }
    for (pipe, queued) in &mut pipes {
        if *queued > 0 {
            pipe.query_async::<()>(conn).await?;
        }
    }
    Ok(())
}
