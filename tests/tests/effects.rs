//! Transactional effects: buffered during the invocation, committed with the
//! ack, never on failure, only where `[plugin.allow]` permits.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use streamhost::config::AllowConfig;
use streamhost::dlq;
use streamhost_tests::*;

fn probe(stream: &str) -> streamhost::config::PluginConfig {
    let mut p = plugin("probe", artifacts::EFFECTS_PROBE, stream);
    p.allow = AllowConfig {
        emit: vec!["out:*".into()],
        publish: vec!["news".into()],
        schedule: vec!["later:*".into()],
        ..AllowConfig::default()
    };
    p
}

fn fields(op: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    vec![("op".into(), op.into()), ("target".into(), target.into())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emit_commits_with_the_ack_and_never_on_failure_or_outside_the_allow_list() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "in";
    produce(&mut conn, stream, 1, |_| fields("emit", "out:a")).await;
    produce(&mut conn, stream, 1, |_| fields("emit-then-fail", "out:b")).await;
    produce(&mut conn, stream, 1, |_| fields("emit", "forbidden")).await;
    let host = InProcessHost::start(config(&redis.url(), vec![probe(stream)])).await;
    let m = host.metrics("probe", stream);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            m.acked.get() + m.dead_lettered.get() >= 3
        })
        .await
    );
    host.stop().await;

    assert_eq!(
        xlen(&mut conn, "out:a").await,
        1,
        "allowed emit committed once"
    );
    assert_eq!(
        xlen(&mut conn, "out:b").await,
        0,
        "emit of a failed invocation never happens"
    );
    assert_eq!(
        xlen(&mut conn, "forbidden").await,
        0,
        "refused emit writes nothing"
    );
    assert_eq!(pending(&mut conn, stream, "probe").await, 0);
    let letters = dlq::range(&mut conn, "dlq:in:probe", "-", 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 2);
    let errors: Vec<&str> = letters
        .iter()
        .filter_map(|d| d.meta(dlq::meta::ERROR))
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("failing after emit")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("not allowed") && e.contains("forbidden")),
        "{errors:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_subscribers_after_commit() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("news").await.unwrap();
    let ids = produce(&mut conn, "in", 1, |_| fields("publish", "news")).await;
    let host = InProcessHost::start(config(&redis.url(), vec![probe("in")])).await;
    let msg = tokio::time::timeout(Duration::from_secs(20), pubsub.on_message().next())
        .await
        .expect("a message on the channel")
        .expect("the subscription is open");
    host.stop().await;
    assert_eq!(msg.get_payload_bytes(), ids[0].as_bytes());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_entries_arrive_once_and_not_early_across_a_restart() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let produced_at = now_ms();
    produce(&mut conn, "in", 20, |i| {
        let mut f = fields("schedule", "later:x");
        f.push(("delay_ms".into(), (1500 + 50 * i).to_string().into_bytes()));
        f
    })
    .await;
    let host = InProcessHost::start(config(&redis.url(), vec![probe("in")])).await;
    let m = host.metrics("probe", "in");
    assert!(wait_until(Duration::from_secs(20), || async { m.acked.get() >= 20 }).await);
    host.stop().await;
    assert_eq!(
        xlen(&mut conn, "later:x").await,
        0,
        "nothing arrives before its due time"
    );

    let host = InProcessHost::start(config(&redis.url(), vec![probe("in")])).await;
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            xlen(&mut connect(&redis.url()).await, "later:x").await >= 20
        })
        .await,
        "all scheduled entries arrive after a restart"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.stop().await;
    let arrived: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("later:x")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        arrived.len(),
        20,
        "each exactly once (waited {:?})",
        started.elapsed()
    );
    for (id, _) in &arrived {
        let ms: u64 = id.split('-').next().unwrap().parse().unwrap();
        assert!(
            ms >= produced_at + 1500,
            "entry {id} arrived before its due time"
        );
    }
}

/// A commit that would fail halfway (a key of the wrong type, found before or
/// created by an earlier effect of the same commit) writes nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_cannot_complete_writes_nothing() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let _: () = redis::cmd("SET")
        .arg("out:taken")
        .arg("a string")
        .query_async(&mut conn)
        .await
        .unwrap();
    produce(&mut conn, "in", 1, |_| fields("emit-and-set", "out:taken")).await;
    // Emits to `state:probe:k` (a stream), then sets state key `k` (the same key, a string).
    produce(&mut conn, "in", 1, |_| {
        fields("emit-and-set", "state:probe:k")
    })
    .await;
    let mut p = probe("in");
    p.allow.emit.push("state:probe:*".into());
    p.retry.max_attempts = 2;
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("probe", "in");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            m.dead_lettered.get() >= 2
        })
        .await
    );
    host.stop().await;
    let t: String = redis::cmd("TYPE")
        .arg("out:taken")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(t, "string", "the key of the wrong type is untouched");
    let t: String = redis::cmd("TYPE")
        .arg("state:probe:k")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        t, "none",
        "neither the emit nor the state write of a refused commit happened"
    );
    let letters = dlq::range(&mut conn, "dlq:in:probe", "-", 10)
        .await
        .unwrap();
    assert!(
        letters.iter().all(|d| d
            .meta(dlq::meta::ERROR)
            .is_some_and(|e| e.contains("WRONGTYPE"))),
        "{letters:?}"
    );
    assert_eq!(pending(&mut conn, "in", "probe").await, 0);
}
