//! The sorted-set queue source on a real redis-server with real host
//! processes: lowest score first, due members never early and once each
//! across a restart, nothing lost to a `kill -9` between pop and ack,
//! attempts counted in Redis, dead letters with the member byte for byte.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use streamhost::config::{PluginConfig, SortedSetOrder, SourceKind};
use streamhost_tests::ledger;
use streamhost_tests::*;

const SET: &str = "jobs:render";

fn recorder(consumer: &str, order: SortedSetOrder) -> PluginConfig {
    let mut p = plugin("recorder", artifacts::RECORDER, "");
    p.stream.clear();
    p.sorted_set = Some(SET.to_owned());
    p.order = Some(order);
    p.consumer = Some(consumer.to_owned());
    assert_eq!(p.source(), SourceKind::SortedSet(SET, order));
    p
}

async fn zadd(conn: &mut MultiplexedConnection, members: &[(f64, Vec<u8>)]) {
    for chunk in members.chunks(1000) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(SET);
        for (score, member) in chunk {
            cmd.arg(*score).arg(member.as_slice());
        }
        let _: i64 = cmd.query_async(conn).await.expect("ZADD");
    }
}

/// Members left in the queue, in flight, and delivery counts kept.
async fn left(conn: &mut MultiplexedConnection) -> (u64, u64, u64) {
    let mut card = Vec::new();
    for key in [SET.to_owned(), format!("{SET}:inflight:recorder")] {
        let n: u64 = redis::cmd("ZCARD")
            .arg(key)
            .query_async(conn)
            .await
            .expect("ZCARD");
        card.push(n);
    }
    let meta: u64 = redis::cmd("HLEN")
        .arg(format!("{SET}:meta:recorder"))
        .query_async(conn)
        .await
        .expect("HLEN");
    (card[0], card[1], meta)
}

async fn drained(conn: &MultiplexedConnection, timeout: Duration) -> bool {
    wait_until(timeout, || {
        let mut conn = conn.clone();
        async move { left(&mut conn).await == (0, 0, 0) }
    })
    .await
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_are_handled_lowest_score_first() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    // Added in a scrambled order; scores 0..300 with negatives and fractions.
    let mut members: Vec<(f64, Vec<u8>)> = (0..300)
        .map(|i| {
            let score = ((i * 7919) % 300) as f64 - 100.5;
            (score, format!("p{score}").into_bytes())
        })
        .collect();
    members.reverse();
    zadd(&mut conn, &members).await;
    let mut p = recorder("host-a", SortedSetOrder::Priority);
    p.concurrency = 1;
    let mut host = HostProcess::spawn(dir.path(), "host-a", &config(&redis.url(), vec![p]));
    assert!(
        drained(&conn, Duration::from_secs(30)).await,
        "{:?}\n{}",
        left(&mut conn).await,
        host.log_tail()
    );
    let seen: Vec<f64> = ledger::recorder_data(&host.log())
        .iter()
        .map(|h| h.id.trim_start_matches('p').parse().expect("score"))
        .collect();
    let mut sorted: Vec<f64> = members.iter().map(|(s, _)| *s).collect();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(seen, sorted, "handled lowest score first, each once");
    terminate(&mut host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_members_are_never_early_and_handled_once_across_a_restart() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let base = now_ms();
    // 40 members due over the next 4 s, one already due, added out of order.
    let mut members: Vec<(f64, Vec<u8>)> = (0..40)
        .map(|i| {
            let due = (base + 100.0 * ((i * 13) % 40) as f64).round();
            (due, format!("d{due}").into_bytes())
        })
        .collect();
    members.push((base - 5_000.0, format!("d{}", base - 5_000.0).into_bytes()));
    zadd(&mut conn, &members).await;
    let cfg = config(&redis.url(), vec![recorder("host-a", SortedSetOrder::Due)]);
    let mut first = HostProcess::spawn(dir.path(), "first", &cfg);
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    terminate(&mut first);
    let mut second = HostProcess::spawn(dir.path(), "second", &cfg);
    assert!(
        drained(&conn, Duration::from_secs(30)).await,
        "{:?}\n{}",
        left(&mut conn).await,
        second.log_tail()
    );
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for log in [first.log(), second.log()] {
        for line in ledger::log_lines(&log, "recorder data ") {
            let word = line
                .text
                .split("recorder data ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .expect("word");
            let due: f64 = word.trim_start_matches('d').parse().expect("due");
            let at = line
                .at
                .duration_since(UNIX_EPOCH)
                .expect("clock")
                .as_millis() as f64;
            assert!(
                at >= due,
                "{word} handled {} ms before its due time",
                due - at
            );
            assert!(
                at - due < 1_500.0 || due < base,
                "{word} handled {} ms late",
                at - due
            );
            *runs.entry(word.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(runs.len(), members.len(), "every member handled");
    assert!(
        runs.values().all(|&n| n == 1),
        "each exactly once: {runs:?}"
    );
    assert!(
        !ledger::recorder_data(&first.log()).is_empty()
            && !ledger::recorder_data(&second.log()).is_empty(),
        "the restart was mid-run"
    );
    terminate(&mut second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_pop_and_ack_loses_nothing() {
    const N: usize = 3_000;
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let members: Vec<(f64, Vec<u8>)> = (0..N)
        .map(|i| (i as f64, format!("k{i} sleep_ms=1").into_bytes()))
        .collect();
    zadd(&mut conn, &members).await;
    let mut a = HostProcess::spawn(
        dir.path(),
        "host-a",
        &config(
            &redis.url(),
            vec![recorder("host-a", SortedSetOrder::Priority)],
        ),
    );
    let some = wait_until(Duration::from_secs(20), || {
        let n = ledger::recorder_data(&a.log()).len();
        async move { n >= 300 }
    })
    .await;
    assert!(some, "{}", a.log_tail());
    a.signal("-KILL");
    a.wait(Duration::from_secs(5));
    let (queued, in_flight, _) = left(&mut conn).await;
    assert!(
        in_flight > 0,
        "killed with members in flight (queued {queued})"
    );
    let mut b = HostProcess::spawn(
        dir.path(),
        "host-b",
        &config(
            &redis.url(),
            vec![recorder("host-b", SortedSetOrder::Priority)],
        ),
    );
    assert!(
        drained(&conn, Duration::from_secs(45)).await,
        "{:?}\n{}",
        left(&mut conn).await,
        b.log_tail()
    );
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for h in ledger::recorder_data(&a.log())
        .into_iter()
        .chain(ledger::recorder_data(&b.log()))
    {
        *runs.entry(h.id).or_default() += 1;
    }
    let lost = (0..N)
        .filter(|i| !runs.contains_key(&format!("k{i}")))
        .count();
    let duplicates: usize = runs.values().map(|n| n - 1).sum();
    eprintln!(
        "sorted-set kill test: {N} members, kill -9 with {in_flight} in flight: lost {lost}, duplicates {duplicates}"
    );
    assert_eq!(lost, 0);
    assert!(
        duplicates as u64 <= in_flight,
        "only members in flight on the killed host run twice"
    );
    assert!(
        ledger::strip_ansi(&b.log()).contains("passed their visibility deadline"),
        "{}",
        b.log_tail()
    );
    terminate(&mut b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_in_redis_and_rejects_are_dead_lettered_byte_for_byte() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let rejected = b"r1 reject \xfe\x00tail".to_vec();
    zadd(
        &mut conn,
        &[
            (1.0, b"flaky fail_times=2".to_vec()),
            (2.0, rejected.clone()),
        ],
    )
    .await;
    let mut host = HostProcess::spawn(
        dir.path(),
        "host-a",
        &config(
            &redis.url(),
            vec![recorder("host-a", SortedSetOrder::Priority)],
        ),
    );
    assert!(
        drained(&conn, Duration::from_secs(30)).await,
        "{:?}\n{}",
        left(&mut conn).await,
        host.log_tail()
    );
    let attempts: Vec<(String, u32)> = ledger::recorder_data(&host.log())
        .into_iter()
        .map(|h| (h.id, h.attempt))
        .collect();
    assert_eq!(
        attempts
            .iter()
            .filter(|(id, _)| id == "flaky")
            .map(|(_, a)| *a)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let entries = ledger::stream_fields(&mut conn, &format!("dlq:{SET}:recorder")).await;
    assert_eq!(entries.len(), 1, "one dead letter");
    let get = |name: &[u8]| ledger::field(&entries[0], std::str::from_utf8(name).expect("ascii"));
    assert_eq!(get(b"msg.data"), Some(rejected));
    assert_eq!(get(b"dlq.reason"), Some(b"rejected".to_vec()));
    assert_eq!(get(b"dlq.score"), Some(b"2".to_vec()));
    terminate(&mut host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_commit_with_the_removal_from_in_flight() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let orders: Vec<(f64, Vec<u8>)> = (0..300).map(|i| (i as f64, order(i).remove(0).1)).collect();
    zadd(&mut conn, &orders).await;
    let mut p = plugin("recorder", artifacts::ORDER_ENRICHER, "");
    p.stream.clear();
    p.sorted_set = Some(SET.to_owned());
    p.allow.emit = vec!["events:orders:accepted".to_owned()];
    let mut host = HostProcess::spawn(dir.path(), "host", &config(&redis.url(), vec![p]));
    assert!(
        drained(&conn, Duration::from_secs(30)).await,
        "{:?}\n{}",
        left(&mut conn).await,
        host.log_tail()
    );
    terminate(&mut host);
    assert_eq!(
        xlen(&mut conn, "events:orders:accepted").await,
        300,
        "one emit per member"
    );
}
