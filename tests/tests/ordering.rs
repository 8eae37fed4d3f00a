//! Per-key ordering (`ordering = { key = "key" }`) on a real host process:
//! 10,000 entries over 50 keys, some failing once, each key handled in
//! stream order; four workers handle ≥ 3× as many entries per second as one
//! (the handler sleeps 4 ms per entry, so the ratio measures parallelism, not
//! the host's CPU; the one-worker rate is measured on the first 2,000).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use streamhost::config::OrderingConfig;
use streamhost_tests::ledger;
use streamhost_tests::*;

const ENTRIES: usize = 10_000;
const KEYS: usize = 50;
const FAIL_EVERY: usize = 97;

/// Entry `i`: key `k<i % 50>`, sequence `i`, a 4 ms sleep; every 97th fails once.
fn entry(i: usize) -> Vec<(String, Vec<u8>)> {
    let mut fields = vec![
        ("key".to_owned(), format!("k{}", i % KEYS).into_bytes()),
        ("seq".to_owned(), i.to_string().into_bytes()),
        ("sleep_ms".to_owned(), b"4".to_vec()),
    ];
    if i.is_multiple_of(FAIL_EVERY) {
        fields.push(("fail_once".to_owned(), b"1".to_vec()));
    }
    fields
}

/// `sequencer <key> <seq> attempt <n>` lines of a log, in order.
fn sequenced(log: &str) -> Vec<(String, usize, u32)> {
    ledger::strip_ansi(log)
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("sequencer ")? + "sequencer ".len()..];
            let mut w = rest.split_whitespace();
            let key = w.next()?.to_owned();
            let seq = w.next()?.parse().ok()?;
            let attempt = match (w.next(), w.next()) {
                (Some("attempt"), Some(n)) => n.parse().ok()?,
                _ => return None,
            };
            Some((key, seq, attempt))
        })
        .collect()
}

/// Runs one host with `workers` on `entries` entries of a fresh stream;
/// returns entries per second from its first read to the last entry
/// settled, and its log.
async fn run(redis: &TestRedis, stream: &str, workers: usize, entries: usize) -> (f64, String) {
    let mut conn = connect(&redis.url()).await;
    let ids = produce(&mut conn, stream, entries, entry).await;
    let mut p = plugin("sequencer", artifacts::SEQUENCER, stream);
    p.concurrency = workers;
    p.ordering = Some(OrderingConfig {
        key: "key".to_owned(),
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(&redis.url(), vec![p]);
    let mut host = HostProcess::spawn(dir.path(), "ordered", &cfg);
    let group = "sequencer";
    assert!(
        wait_until(Duration::from_secs(60), || async {
            ledger::last_delivered(&mut conn.clone(), stream, group)
                .await
                .is_some_and(|id| id != "0-0")
        })
        .await,
        "host did not start reading; log:\n{}",
        host.log_tail()
    );
    let started = Instant::now();
    // Read all and nothing pending; the log is read once, after.
    let last = ids.last().expect("ids");
    let done = ledger::wait_settled(&conn, stream, group, last, Duration::from_secs(120)).await;
    let seconds = started.elapsed().as_secs_f64();
    assert!(done, "not every entry settled; log:\n{}", host.log_tail());
    host.signal("-TERM");
    assert_eq!(
        host.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        host.log_tail()
    );
    (entries as f64 / seconds, host.log())
}

/// Every key's entries ran in stream order: its sequence numbers never go
/// down (a retry repeats its own number before the next one starts).
fn assert_in_order(log: &str, entries: usize) {
    let runs = sequenced(log);
    let mut last: HashMap<&str, usize> = HashMap::new();
    let mut firsts = std::collections::BTreeSet::new();
    let mut retries = 0;
    for (key, seq, attempt) in &runs {
        if let Some(&before) = last.get(key.as_str()) {
            assert!(
                *seq >= before,
                "key {key}: entry {seq} ran after entry {before} (out of order)"
            );
        }
        last.insert(key, *seq);
        if *attempt > 1 {
            retries += 1;
        }
        firsts.insert(*seq);
    }
    assert_eq!(firsts.len(), entries, "every entry handled");
    assert!(
        retries >= entries / FAIL_EVERY,
        "the failing entries ran again ({retries} retries)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_key_in_order_different_keys_in_parallel() {
    let redis = start_redis();
    let (four, log) = run(&redis, "orders:four", 4, ENTRIES).await;
    assert_in_order(&log, ENTRIES);
    let (one, log) = run(&redis, "orders:one", 1, 2_000).await;
    assert_in_order(&log, 2_000);
    let ratio = four / one;
    eprintln!(
        "per-key ordering, {KEYS} keys, 4 ms per entry: 1 worker {one:.0} entries/s (2,000 entries), \
         4 workers {four:.0} entries/s ({ENTRIES} entries), {ratio:.2}x"
    );
    assert!(
        ratio >= 3.0,
        "4 workers must handle ≥ 3× the entries per second of 1 with ordering on: {four:.0}/s vs {one:.0}/s"
    );
}
