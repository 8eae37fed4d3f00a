//! The list queue source on a real redis-server with real host processes:
//! items pushed with `LPUSH` are handled and removed, equal items are
//! distinct items, retries keep their attempt count in Redis, rejects land in
//! the DLQ byte for byte, and hosts killed with `kill -9` lose nothing (the
//! `recorder` plugin's `recorder data` log lines are the ledger).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use streamhost::config::{PluginConfig, SourceKind};
use streamhost_tests::ledger::{self, Handled};
use streamhost_tests::*;

const QUEUE: &str = "jobs:email";

/// A recorder plugin table on the list queue for a named consumer.
fn recorder(consumer: &str) -> PluginConfig {
    let mut p = plugin("recorder", artifacts::RECORDER, "");
    p.stream.clear();
    p.list = Some(QUEUE.to_owned());
    p.consumer = Some(consumer.to_owned());
    assert_eq!(p.source(), SourceKind::List(QUEUE));
    p
}

async fn lpush(conn: &mut MultiplexedConnection, items: &[Vec<u8>]) {
    for chunk in items.chunks(1000) {
        let () = redis::cmd("LPUSH")
            .arg(QUEUE)
            .arg(chunk)
            .query_async(conn)
            .await
            .expect("LPUSH");
    }
}

async fn llen(conn: &mut MultiplexedConnection, key: &str) -> u64 {
    redis::cmd("LLEN")
        .arg(key)
        .query_async(conn)
        .await
        .expect("LLEN")
}

/// Items left in the queue and in every processing list of the plugin.
async fn left(conn: &mut MultiplexedConnection) -> (u64, u64) {
    let lists: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{QUEUE}:processing:*"))
        .query_async(conn)
        .await
        .expect("KEYS");
    let mut processing = 0;
    for key in &lists {
        processing += llen(conn, key).await;
    }
    (llen(conn, QUEUE).await, processing)
}

/// The dead letters' `msg.data` values and reasons.
async fn dead_letters(conn: &mut MultiplexedConnection) -> Vec<(Vec<u8>, String)> {
    ledger::stream_fields(conn, &format!("dlq:{QUEUE}:recorder"))
        .await
        .iter()
        .map(|f| {
            let reason = ledger::field(f, "dlq.reason").unwrap_or_default();
            (
                ledger::field(f, "msg.data").unwrap_or_default(),
                String::from_utf8_lossy(&reason).into_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_are_handled_removed_retried_and_dead_lettered_byte_for_byte() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let binary_reject = b"bin-1 reject \xff\x00\r\n end".to_vec();
    let mut items: Vec<Vec<u8>> = (0..200).map(|i| format!("item-{i}").into_bytes()).collect();
    // Equal items are distinct items: three copies, three handlings.
    items.extend(std::iter::repeat_n(b"dup".to_vec(), 3));
    items.push(b"flaky fail_times=2".to_vec());
    items.push(binary_reject.clone());
    lpush(&mut conn, &items).await;

    let mut p = recorder("host-a");
    p.retry.max_attempts = 5;
    let mut host = HostProcess::spawn(dir.path(), "host-a", &config(&redis.url(), vec![p]));
    let done = wait_until(Duration::from_secs(30), || {
        let mut conn = conn.clone();
        async move { left(&mut conn).await == (0, 0) }
    })
    .await;
    assert!(
        done,
        "queue and processing lists not empty: {:?}\n{}",
        left(&mut conn).await,
        host.log_tail()
    );
    // Settled: the last ack may still be on its way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = ledger::recorder_data(&host.log());
    let mut runs: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for h in &seen {
        runs.entry(h.id.as_str()).or_default().push(h.attempt);
    }
    for i in 0..200 {
        assert_eq!(
            runs.get(format!("item-{i}").as_str()),
            Some(&vec![1]),
            "item-{i}"
        );
    }
    assert_eq!(
        runs.get("dup"),
        Some(&vec![1, 1, 1]),
        "three equal items, three handlings"
    );
    assert_eq!(
        runs.get("flaky"),
        Some(&vec![1, 2, 3]),
        "attempts counted across requeues"
    );
    assert_eq!(runs.get("bin-1"), Some(&vec![1]), "a reject is not retried");
    let dlq = dead_letters(&mut conn).await;
    assert_eq!(
        dlq,
        vec![(binary_reject, "rejected".to_owned())],
        "the item as pushed, byte for byte"
    );
    terminate(&mut host);
    assert_eq!(
        llen(&mut conn, &format!("{QUEUE}:processing:recorder:host-a")).await,
        0,
        "nothing left in flight after a stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_keeps_failing_is_dead_lettered_after_max_attempts() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    lpush(&mut conn, &[b"doomed fail_times=99".to_vec()]).await;
    let mut p = recorder("host-a");
    p.retry.max_attempts = 3;
    let mut host = HostProcess::spawn(dir.path(), "host-a", &config(&redis.url(), vec![p]));
    let done = wait_until(Duration::from_secs(20), || {
        let mut conn = conn.clone();
        async move { !dead_letters(&mut conn).await.is_empty() }
    })
    .await;
    assert!(done, "never dead-lettered:\n{}", host.log_tail());
    let attempts: Vec<u32> = ledger::recorder_data(&host.log())
        .iter()
        .map(|h| h.attempt)
        .collect();
    assert_eq!(attempts, vec![1, 2, 3]);
    assert_eq!(
        dead_letters(&mut conn).await,
        vec![(
            b"doomed fail_times=99".to_vec(),
            "attempts-exhausted".to_owned()
        )]
    );
    assert_eq!(left(&mut conn).await, (0, 0));
    terminate(&mut host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_three_times_with_two_hosts_loses_nothing() {
    const N: usize = 20_000;
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let items: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("item-{i} sleep_ms=1").into_bytes())
        .collect();
    lpush(&mut conn, &items).await;
    let cfg = |consumer: &str| config(&redis.url(), vec![recorder(consumer)]);
    let started = Instant::now();
    let host_b = HostProcess::spawn(dir.path(), "host-b", &cfg("host-b"));
    let mut killed = Vec::new();
    let mut host_a = HostProcess::spawn(dir.path(), "host-a0", &cfg("host-a0"));
    for round in 1..=3 {
        // Kill while items are in flight: wait for this incarnation to have
        // handled some, then a little more.
        let handled_some = wait_until(Duration::from_secs(20), || {
            let n = ledger::recorder_data(&host_a.log()).len();
            async move { n >= 300 }
        })
        .await;
        assert!(
            handled_some,
            "host-a{} handled nothing:\n{}",
            round - 1,
            host_a.log_tail()
        );
        host_a.signal("-KILL");
        host_a.wait(Duration::from_secs(5));
        killed.push(host_a.log());
        // A new consumer name: the killed one's processing list must be moved
        // back by a live host once its heartbeat expires.
        host_a = HostProcess::spawn(
            dir.path(),
            &format!("host-a{round}"),
            &cfg(&format!("host-a{round}")),
        );
    }
    let done = wait_until(Duration::from_secs(50), || {
        let mut conn = conn.clone();
        async move { left(&mut conn).await == (0, 0) }
    })
    .await;
    let remaining = left(&mut conn).await;
    assert!(
        done,
        "left (queue, processing): {remaining:?}\nhost-b:\n{}",
        host_b.log_tail()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = started.elapsed();

    let on_killed: BTreeSet<String> = killed
        .iter()
        .flat_map(|log| ledger::recorder_data(log))
        .map(|h| h.id)
        .collect();
    let mut all: Vec<Handled> = killed
        .iter()
        .flat_map(|log| ledger::recorder_data(log))
        .collect();
    all.extend(ledger::recorder_data(&host_a.log()));
    all.extend(ledger::recorder_data(&host_b.log()));
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for h in &all {
        *runs.entry(h.id.clone()).or_default() += 1;
    }
    let lost: Vec<usize> = (0..N)
        .filter(|i| !runs.contains_key(&format!("item-{i}")))
        .collect();
    let duplicated: Vec<(&String, &usize)> = runs.iter().filter(|(_, n)| **n > 1).collect();
    let duplicates: usize = duplicated.iter().map(|(_, n)| **n - 1).sum();
    eprintln!(
        "list kill test: {N} items, 2 hosts, 3 kill -9: handled {}, lost {}, duplicates {duplicates} \
         (all on killed hosts), dead-lettered {}, {took:.1?}",
        runs.len(),
        lost.len(),
        dead_letters(&mut conn).await.len()
    );
    assert!(
        lost.is_empty(),
        "lost {} items, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(runs.len(), N, "nothing but the produced items was handled");
    for (id, _) in &duplicated {
        assert!(
            on_killed.contains(*id),
            "{id} handled twice without being in flight on a killed host"
        );
    }
    assert!(
        dead_letters(&mut conn).await.is_empty(),
        "nothing was due for the DLQ"
    );
    assert!(
        !killed
            .iter()
            .all(|log| ledger::recorder_data(log).is_empty()),
        "the kills happened mid-run"
    );
    assert!(
        strip(&host_b.log()).contains("consumer presumed dead")
            || strip(&host_a.log()).contains("consumer presumed dead"),
        "a live host moved a dead consumer's processing list back"
    );
}

fn strip(log: &str) -> String {
    ledger::strip_ansi(log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_key_that_holds_a_string_is_refused_with_exit_2() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let () = redis::cmd("SET")
        .arg(QUEUE)
        .arg("oops")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let mut host = HostProcess::spawn(
        dir.path(),
        "host-a",
        &config(&redis.url(), vec![recorder("host-a")]),
    );
    let code = host.wait(Duration::from_secs(20));
    let log = strip(&host.log());
    assert_eq!(code, Some(2), "exit code; log:\n{log}");
    assert!(
        log.contains("`list = \"jobs:email\"` names a Redis string, not a list"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // `check` refuses it the same way, before anything runs.
    let path = dir.path().join("host-a.toml");
    let out = std::process::Command::new(streamhost_bin())
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("names a Redis string, not a list"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_commit_with_the_removal_from_the_processing_list() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let orders: Vec<Vec<u8>> = (0..300).map(|i| order(i).remove(0).1).collect();
    lpush(&mut conn, &orders).await;
    let mut p = plugin("enricher", artifacts::ORDER_ENRICHER, "");
    p.stream.clear();
    p.list = Some(QUEUE.to_owned());
    p.allow.emit = vec!["events:orders:accepted".to_owned()];
    let mut host = HostProcess::spawn(dir.path(), "host", &config(&redis.url(), vec![p]));
    let done = wait_until(Duration::from_secs(30), || {
        let mut conn = conn.clone();
        async move { xlen(&mut conn, "events:orders:accepted").await >= 300 }
    })
    .await;
    assert!(done, "{}", host.log_tail());
    terminate(&mut host);
    assert_eq!(
        xlen(&mut conn, "events:orders:accepted").await,
        300,
        "one emit per item"
    );
    let processing: u64 = redis::cmd("LLEN")
        .arg(format!("{QUEUE}:processing:enricher:enricher-test"))
        .query_async(&mut conn)
        .await
        .expect("LLEN");
    assert_eq!(
        (llen(&mut conn, QUEUE).await, processing),
        (0, 0),
        "every item removed with its effects"
    );
}
