//! Operations: the admin endpoint's metrics and readiness, retention that
//! never trims what a group still needs, and `streamhost status` against
//! Redis's own view.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use streamhost::config::{RetentionConfig, RetryConfig};
use streamhost_tests::*;

fn flaky(fail_times: usize) -> impl Fn(usize) -> Vec<(String, Vec<u8>)> {
    move |_| vec![("fail_times".to_owned(), fail_times.to_string().into_bytes())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_through_failures_retries_and_dead_letters() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "ops:flaky";
    // 20 succeed at once, 10 after two retries, 5 fail all 3 attempts.
    produce(&mut conn, stream, 20, flaky(0)).await;
    produce(&mut conn, stream, 10, flaky(2)).await;
    produce(&mut conn, stream, 5, flaky(100)).await;
    let mut p = plugin("flaky", artifacts::FLAKY, stream);
    p.retry = RetryConfig {
        max_attempts: 3,
        initial_ms: 10,
        max_ms: 50,
        ..RetryConfig::default()
    };
    let host = AdminHost::start(config(&redis.url(), vec![p]), None).await;
    let labels = [("plugin", "flaky"), ("stream", stream)];
    let settled = wait_until(Duration::from_secs(30), || async {
        let text = host.get("/metrics").await.body;
        sample(&text, "streamhost_entries_acked_total", &labels) == Some(30.0)
            && sample(&text, "streamhost_dlq_entries", &labels) == Some(5.0)
            && sample(&text, "streamhost_group_lag", &labels) == Some(0.0)
    })
    .await;
    assert!(
        settled,
        "metrics did not settle:\n{}",
        host.get("/metrics").await.body
    );

    let metrics = host.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .headers
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{}",
        metrics.headers
    );
    let text = metrics.body;
    let value = |name: &str| sample(&text, name, &labels);
    let failed = |kind: &str| {
        sample(
            &text,
            "streamhost_entries_failed_total",
            &[("plugin", "flaky"), ("kind", kind)],
        )
    };
    // Every delivery is received: 20 + 10×3 + 5×3.
    assert_eq!(
        value("streamhost_entries_received_total"),
        Some(65.0),
        "{text}"
    );
    assert_eq!(value("streamhost_entries_acked_total"), Some(30.0));
    // Retries scheduled: two for each of the 15 that failed at least twice.
    assert_eq!(value("streamhost_entries_retried_total"), Some(30.0));
    assert_eq!(value("streamhost_entries_dead_lettered_total"), Some(5.0));
    assert_eq!(failed("retry"), Some(10.0 * 2.0 + 5.0 * 3.0));
    assert_eq!(failed("rejected"), Some(0.0));
    assert_eq!(
        value("streamhost_handler_duration_seconds_count"),
        Some(65.0)
    );
    assert_eq!(value("streamhost_handler_fuel_count"), Some(65.0));
    assert_eq!(value("streamhost_oldest_pending_age_seconds"), Some(0.0));
    let digest = streamhost::plugin::digest(&std::fs::read(artifacts::FLAKY).expect("artifact"));
    assert_eq!(
        sample(
            &text,
            "streamhost_plugin_info",
            &[
                ("plugin", "flaky"),
                ("group", "flaky"),
                ("version", &digest)
            ]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );

    assert_eq!(host.get("/healthz").await.status, 200);
    assert_eq!(host.get("/nope").await.status, 404);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_redis_down_and_back() {
    let mut redis = start_redis();
    let host = AdminHost::start(
        config(
            &redis.url(),
            vec![plugin("echo", artifacts::ECHO, "ops:ready")],
        ),
        None,
    )
    .await;
    let status = |path: &'static str| {
        let addr = host.addr;
        async move { http(addr, "GET", path, &[], "").await.status }
    };
    assert!(
        wait_until(Duration::from_secs(10), || async {
            status("/readyz").await == 200
        })
        .await,
        "never ready: {}",
        host.get("/readyz").await.body
    );

    redis.stop();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            status("/readyz").await == 503
        })
        .await,
        "still ready with Redis stopped"
    );
    let unready = host.get("/readyz").await;
    assert!(unready.body.contains("Redis"), "{}", unready.body);
    assert_eq!(host.get("/healthz").await.status, 200, "alive all the same");

    redis.restart(&[]).expect("redis restarts");
    assert!(
        wait_until(Duration::from_secs(15), || async {
            status("/readyz").await == 200
        })
        .await,
        "not ready again after Redis returned: {}",
        host.get("/readyz").await.body
    );
    host.stop().await;
}

/// Reads `count` new entries into `group` as `consumer`; returns their ids.
async fn read_group(
    conn: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    consumer: &str,
    count: usize,
) -> Vec<String> {
    let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(conn)
        .await
        .expect("XREADGROUP");
    reply
        .keys
        .into_iter()
        .flat_map(|k| k.ids)
        .map(|e| e.id)
        .collect()
}

async fn ack(conn: &mut MultiplexedConnection, stream: &str, group: &str, ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let _: u64 = redis::cmd("XACK")
        .arg(stream)
        .arg(group)
        .arg(ids)
        .query_async(conn)
        .await
        .expect("XACK");
}

/// Entries from `id` to the end of the stream.
async fn entries_from(conn: &mut MultiplexedConnection, stream: &str, id: &str) -> usize {
    let reply: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg(id)
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    reply.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_only_what_no_group_still_needs() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    // Small stream nodes make the approximate trim fine-grained enough to assert on.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg(10)
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");
    let stream = "ops:retained";
    let ids = produce(&mut conn, stream, 1000, order).await;
    for group in ["stuck", "behind"] {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(group)
            .arg("0")
            .query_async(&mut conn)
            .await
            .expect("XGROUP CREATE");
    }
    // `stuck` read 300 and never acked entry 250; `behind` read 600 and acked them.
    let read = read_group(&mut conn, stream, "stuck", "stuck-1", 300).await;
    let stuck_id = ids[250].clone();
    let others: Vec<String> = read.into_iter().filter(|id| *id != stuck_id).collect();
    ack(&mut conn, stream, "stuck", &others).await;
    let read = read_group(&mut conn, stream, "behind", "behind-1", 600).await;
    ack(&mut conn, stream, "behind", &read).await;

    let mut cfg = config(
        &redis.url(),
        vec![plugin(
            "order-validator",
            artifacts::ORDER_VALIDATOR,
            stream,
        )],
    );
    cfg.retention = vec![RetentionConfig {
        stream: stream.to_owned(),
        max_len: Some(100),
        max_age: None,
        interval_ms: 100,
    }];
    let host = AdminHost::start(cfg, None).await;
    let labels = [("stream", stream)];
    let metric = |name: &'static str| {
        let addr = host.addr;
        async move {
            sample(
                &http(addr, "GET", "/metrics", &[], "").await.body,
                name,
                &labels,
            )
        }
    };

    // Held back by the stuck pending entry: everything from it on survives.
    assert!(
        wait_until(Duration::from_secs(20), || async {
            metric("streamhost_retention_held_back").await == Some(1.0)
                && xlen(&mut connect(&redis.url()).await, stream).await <= 760
        })
        .await,
        "retention did not trim up to the stuck entry: xlen {}",
        xlen(&mut conn, stream).await
    );
    let len = xlen(&mut conn, stream).await;
    assert!(
        len >= 750,
        "trimmed past the stuck pending entry: xlen {len}"
    );
    assert_eq!(entries_from(&mut conn, stream, &stuck_id).await, 750);
    assert_eq!(pending(&mut conn, stream, "stuck").await, 1);
    assert_eq!(
        metric("streamhost_retention_trimmed_entries_total").await,
        Some((1000 - len) as f64)
    );

    // Once acked, `behind` holds it: its unread entries survive.
    ack(&mut conn, stream, "stuck", &[stuck_id]).await;
    let read = read_group(&mut conn, stream, "stuck", "stuck-1", 1000).await;
    ack(&mut conn, stream, "stuck", &read).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            xlen(&mut connect(&redis.url()).await, stream).await <= 411
        })
        .await,
        "retention did not move on to the lagging group: xlen {}",
        xlen(&mut conn, stream).await
    );
    assert_eq!(
        entries_from(&mut conn, stream, &ids[599]).await,
        401,
        "an entry `behind` has not read was trimmed"
    );
    assert_eq!(metric("streamhost_retention_held_back").await, Some(1.0));

    // Everyone caught up: down to about max_len, no longer held back.
    let read = read_group(&mut conn, stream, "behind", "behind-1", 1000).await;
    ack(&mut conn, stream, "behind", &read).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            metric("streamhost_retention_held_back").await == Some(0.0)
                && xlen(&mut connect(&redis.url()).await, stream).await <= 110
        })
        .await,
        "retention did not trim to max_len: xlen {}",
        xlen(&mut conn, stream).await
    );
    assert!(
        xlen(&mut conn, stream).await >= 100,
        "trimmed below max_len"
    );
    let len = xlen(&mut conn, stream).await;
    assert_eq!(
        metric("streamhost_retention_trimmed_entries_total").await,
        Some((1000 - len) as f64)
    );
    host.stop().await;
}

/// Runs the real `streamhost status` and parses its JSON.
fn status_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(streamhost_bin())
        .arg("status")
        .args(args)
        .arg("--json")
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost status");
    assert!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_matches_xinfo_and_xpending() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "ops:status";
    produce(&mut conn, stream, 30, flaky(0)).await;
    produce(&mut conn, stream, 3, flaky(100)).await;
    let mut p = plugin("flaky", artifacts::FLAKY, stream);
    p.retry = RetryConfig {
        max_attempts: 2,
        initial_ms: 10,
        max_ms: 20,
        ..RetryConfig::default()
    };
    let cfg = config(&redis.url(), vec![p]);
    let host = InProcessHost::start(cfg.clone()).await;
    let m = host.metrics("flaky", stream);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            m.acked.get() == 30 && m.dead_lettered.get() == 3
        })
        .await
    );
    host.stop().await;
    // Leave some entries pending on another consumer and some unread.
    produce(&mut conn, stream, 12, flaky(0)).await;
    let taken = read_group(&mut conn, stream, "flaky", "elsewhere", 5).await;
    assert_eq!(taken.len(), 5);

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("streamhost.toml");
    std::fs::write(&path, toml::to_string(&cfg).expect("config")).expect("write config");
    let report = status_json(&["--config", path.to_str().expect("utf-8 path")]);
    let g = &report["groups"][0];

    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .expect("XINFO GROUPS");
    let xinfo = &groups[0];
    let int = |v: &redis::Value| match v {
        redis::Value::Int(n) => serde_json::json!(n),
        redis::Value::Nil => serde_json::Value::Null,
        other => panic!("unexpected {other:?}"),
    };
    let string = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => serde_json::json!(String::from_utf8_lossy(b)),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(g["plugin"], "flaky");
    assert_eq!(g["group"], string(&xinfo["name"]));
    assert_eq!(g["pending"], int(&xinfo["pending"]));
    assert_eq!(g["lag"], int(&xinfo["lag"]));
    assert_eq!(g["entries_read"], int(&xinfo["entries-read"]));
    assert_eq!(g["last_delivered_id"], string(&xinfo["last-delivered-id"]));
    assert_eq!(g["lag"], 12 - 5);
    assert_eq!(g["pending"], 5);

    let (count, smallest, largest, per_consumer): (u64, String, String, Vec<(String, String)>) =
        redis::cmd("XPENDING")
            .arg(stream)
            .arg("flaky")
            .query_async(&mut conn)
            .await
            .expect("XPENDING");
    assert_eq!(g["pending"], count);
    assert_eq!(g["oldest_pending_id"], smallest);
    assert_eq!(g["newest_pending_id"], largest);
    let consumers: HashMap<String, u64> = g["consumers"]
        .as_array()
        .expect("consumers")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["pending"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    for (name, n) in &per_consumer {
        assert_eq!(
            consumers.get(name).map(u64::to_string),
            Some(n.clone()),
            "{name}"
        );
    }
    assert!(consumers.contains_key("flaky-test"), "{consumers:?}");
    assert_eq!(consumers.get("flaky-test"), Some(&0));

    assert_eq!(g["stream_length"], xlen(&mut conn, stream).await);
    assert_eq!(g["dlq"]["stream"], "dlq:ops:status:flaky");
    assert_eq!(g["dlq"]["length"], 3);
    let digest = streamhost::plugin::digest(&std::fs::read(artifacts::FLAKY).expect("artifact"));
    assert_eq!(g["version"]["digest"], digest);
    assert!(g["rate"].is_null(), "no rate unless asked");

    // Without a config: every group of a stream, and a sampled rate.
    let report = status_json(&["--redis", &redis.url(), "--stream", stream, "--rate"]);
    let g = &report["groups"][0];
    assert_eq!(g["group"], "flaky");
    assert_eq!(g["pending"], 5);
    assert_eq!(g["rate"]["read_per_second"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_table_names_every_column() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "ops:table";
    produce(&mut conn, stream, 3, order).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("validators")
        .arg("0")
        .query_async(&mut conn)
        .await
        .expect("XGROUP CREATE");
    read_group(&mut conn, stream, "validators", "host-a", 2).await;
    let out = Command::new(streamhost_bin())
        .args(["status", "--redis", &redis.url(), "--stream", stream])
        .output()
        .expect("run streamhost status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "PLUGIN", "VERSION", "STREAM", "GROUP", "LENGTH", "READ", "LAG", "PENDING", "OLDEST",
            "DLQ", "READ/S"
        ]
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..8],
        ["-", "?", stream, "validators", "3", "2", "1", "2"],
        "{text}"
    );
    assert!(text.contains("consumer host-a"), "{text}");
}
