//! `streamhost demo`: the bundled example plugins on sample orders, end to end.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::bundled;
use streamhost::Host;
use streamhost::config::{Config, PluginConfig, RedisConfig};
use streamhost::dlq::{self, meta};
use streamhost::local_redis::LocalRedis;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many sample orders to produce (one in twenty is invalid).
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Redis URL; default: REDIS_URL, else 127.0.0.1:6379 when it answers, else a private redis-server.
    #[arg(long)]
    pub redis: Option<String>,
}

/// Give up waiting for the demo to finish after this long.
const DEMO_TIMEOUT: Duration = Duration::from_secs(300);

/// Produces sample orders, runs `order-validator` and `echo` on them, prints the results.
pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let (url, _private) = resolve_redis(args.redis).await?;
    println!("Redis: {}", streamhost::config::redact(&url));
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let validator = dir.path().join("order_validator.wasm");
    let echo = dir.path().join("echo.wasm");
    std::fs::write(&validator, bundled::ORDER_VALIDATOR)
        .context("cannot write the bundled plugin")?;
    std::fs::write(&echo, bundled::ECHO).context("cannot write the bundled plugin")?;

    // Unique keys, so a shared server is never disturbed.
    let tag = format!("streamhost-demo:{}:{}", std::process::id(), now_ms());
    let stream = format!("{tag}:orders");
    let config = demo_config(&url, &stream, &validator, &echo)?;
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;

    println!("Producing {} orders to {stream} ...", args.count);
    let invalid = produce_orders(&mut conn, &stream, args.count).await?;

    let host = Host::load(config.clone()).await?;
    let metrics = host.metrics();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(host.run(shutdown.clone()));
    let validator_m = metrics.plugin("order-validator", &stream);
    let echo_m = metrics.plugin("echo", &stream);
    let finished = loop {
        let validated = validator_m.acked.get() + validator_m.dead_lettered.get();
        if validated >= args.count && echo_m.acked.get() >= args.count {
            break true;
        }
        if started.elapsed() > DEMO_TIMEOUT {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    shutdown.cancel();
    running.await.context("host task failed")??;

    let handled = validator_m.received.get() + echo_m.received.get();
    println!();
    println!(
        "order-validator: {} accepted (acked), {} rejected → {}",
        validator_m.acked.get(),
        validator_m.dead_lettered.get(),
        config.plugins[0].dlq_stream()
    );
    println!("echo:            {} accepted (acked)", echo_m.acked.get());
    println!(
        "expected:        {} valid, {} invalid",
        args.count - invalid,
        invalid
    );
    println!(
        "throughput:      {handled} handler invocations in {:.2} s = {:.0} msg/s (both plugins, this machine)",
        elapsed.as_secs_f64(),
        handled as f64 / elapsed.as_secs_f64()
    );
    let samples = dlq::range(&mut conn, &config.plugins[0].dlq_stream(), "-", 4).await?;
    println!(
        "\nSample dead letters (streamhost dlq list --stream {}):",
        config.plugins[0].dlq_stream()
    );
    for d in samples {
        println!(
            "  {}  {}: {}",
            d.meta(meta::SOURCE_ID).unwrap_or("?"),
            d.meta(meta::REASON).unwrap_or("?"),
            d.meta(meta::ERROR).unwrap_or("?")
        );
    }
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(&stream)
        .arg(config.plugins[0].dlq_stream())
        .query_async(&mut conn)
        .await;
    let ok = finished
        && validator_m.acked.get() == args.count - invalid
        && validator_m.dead_lettered.get() == invalid
        && echo_m.acked.get() == args.count;
    println!(
        "\n{}",
        if ok {
            "demo ok: every order handled and acked or dead-lettered"
        } else {
            "demo FAILED: counts do not match"
        }
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn demo_config(
    url: &str,
    stream: &str,
    validator: &std::path::Path,
    echo: &std::path::Path,
) -> anyhow::Result<Config> {
    let plugin = |name: &str, component: &std::path::Path| PluginConfig {
        consumer: Some("demo".to_owned()),
        batch: 512,
        block_ms: 200,
        ..PluginConfig::new(name, component, stream)
    };
    let config = Config {
        redis: RedisConfig {
            url: url.to_owned(),
            ..RedisConfig::default()
        },
        plugins: vec![plugin("order-validator", validator), plugin("echo", echo)],
        ..Config::default()
    };
    config.validate()?;
    Ok(config)
}

/// Writes `count` orders, every twentieth invalid in one of four ways; returns how many are invalid.
async fn produce_orders(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    count: u64,
) -> anyhow::Result<u64> {
    let mut invalid = 0;
    let mut pipe = redis::pipe();
    for i in 0..count {
        let data = if i % 20 == 19 {
            invalid += 1;
            match (i / 20) % 4 {
                0 => "this is not json".to_owned(),
                1 => format!(r#"{{"amount_cents":{}}}"#, i),
                2 => format!(r#"{{"order_id":{i},"amount_cents":-{}}}"#, i % 1000 + 1),
                _ => format!(r#"{{"order_id":"A-{i}","amount_cents":100}}"#),
            }
        } else {
            format!(
                r#"{{"order_id":{i},"customer":"c-{}","amount_cents":{},"currency":"EUR","items":[{{"sku":"sku-{}","qty":1}}]}}"#,
                i % 97,
                100 + i % 9000,
                i % 13
            )
        };
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg(data)
            .ignore();
        if i % 1000 == 999 {
            pipe.query_async::<()>(conn).await?;
            pipe.clear();
        }
    }
    if !count.is_multiple_of(1000) {
        pipe.query_async::<()>(conn).await?;
    }
    Ok(invalid)
}

/// `--redis`, then `REDIS_URL`, then the local default when it answers, else a private server.
async fn resolve_redis(flag: Option<String>) -> anyhow::Result<(String, Option<LocalRedis>)> {
    if flag.is_some() || std::env::var("REDIS_URL").is_ok_and(|u| !u.is_empty()) {
        return Ok((
            super::redis_endpoint(flag.as_deref(), None)?
                .url()
                .to_owned(),
            None,
        ));
    }
    let default = RedisConfig::default().url;
    if ping(&default).await {
        return Ok((default, None));
    }
    println!("No Redis at 127.0.0.1:6379; starting a private redis-server");
    let server = tokio::task::spawn_blocking(LocalRedis::start).await??;
    Ok((server.url(), Some(server)))
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Some(_))
    )
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}
