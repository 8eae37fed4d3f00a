//! The pipeline's one decision under failure: every path (ok, retry,
//! exhausted, rejected, trapped, no instance) counts once and agrees with the
//! dead-letter stream and the ledger; failures of Redis (out of memory, a
//! delivery no handler saw, a group that cannot be created) never use up an
//! entry's attempts, never stall other entries and never flood the log;
//! large entries keep memory bounded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use streamhost::PluginContext;
use streamhost::config::{PluginConfig, RetryConfig};
use streamhost::dlq::{self, meta};
use streamhost::{Metrics, PluginMetrics};
use streamhost_tests::ledger;
use streamhost_tests::*;
use tokio_util::sync::CancellationToken;

fn recorder(stream: &str) -> PluginConfig {
    let mut p = plugin("recorder", artifacts::RECORDER, stream);
    p.retry = RetryConfig {
        max_attempts: 3,
        initial_ms: 20,
        max_ms: 100,
        ..RetryConfig::default()
    };
    p
}

fn field(name: &str, value: &str) -> Vec<(String, Vec<u8>)> {
    vec![(name.to_owned(), value.as_bytes().to_vec())]
}

async fn config_set(conn: &mut MultiplexedConnection, key: &str, value: &str) {
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(key)
        .arg(value)
        .query_async(conn)
        .await
        .expect("CONFIG SET");
}

/// Reasons of a DLQ, sorted.
async fn reasons(conn: &mut MultiplexedConnection, dlq_stream: &str) -> Vec<String> {
    let mut r: Vec<String> = dlq::range(conn, dlq_stream, "-", 10_000)
        .await
        .expect("read DLQ")
        .iter()
        .map(|d| d.meta(meta::REASON).unwrap_or("?").to_owned())
        .collect();
    r.sort();
    r
}

/// `entries_failed` summed over every kind.
fn failed_total(m: &PluginMetrics) -> u64 {
    use streamhost::{FailureKind, TrapKind};
    let mut kinds = vec![
        FailureKind::Retry,
        FailureKind::Rejected,
        FailureKind::Instantiate,
        FailureKind::Commit,
        FailureKind::NoOutcome,
    ];
    kinds.extend(
        [
            TrapKind::Fuel,
            TrapKind::Timeout,
            TrapKind::Memory,
            TrapKind::StackOverflow,
            TrapKind::Panic,
        ]
        .map(FailureKind::Trap),
    );
    kinds.into_iter().map(|k| m.failed(k).get()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_path_counts_once_and_agrees_with_the_dlq_and_the_ledger() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "paths";
    let mut p = recorder(stream);
    p.limits.timeout_ms = 300;
    let dlq_stream = p.dlq_stream();
    let mut ids = produce(&mut conn, stream, 20, |i| field("n", &i.to_string())).await;
    ids.extend(produce(&mut conn, stream, 5, |_| field("reject", "1")).await);
    ids.extend(produce(&mut conn, stream, 5, |_| field("fail_times", "1")).await);
    ids.extend(produce(&mut conn, stream, 5, |_| field("fail_times", "99")).await);
    ids.extend(produce(&mut conn, stream, 2, |_| field("sleep_ms", "5000")).await);
    let last = ids.last().expect("ids").clone();
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("recorder", stream);
    let settled =
        ledger::wait_settled(&conn, stream, "recorder", &last, Duration::from_secs(60)).await;
    host.stop().await;
    assert!(
        settled,
        "not settled: {:?}",
        ledger::pending_entries(&mut conn, stream, "recorder").await
    );

    // The DLQ: 5 rejected; 5 retried out and 2 timed out, both `attempts-exhausted`.
    let mut want = vec!["rejected".to_owned(); 5];
    want.extend(vec!["attempts-exhausted".to_owned(); 7]);
    want.sort();
    assert_eq!(reasons(&mut conn, &dlq_stream).await, want);
    // The ledger: every id acked or dead-lettered, once.
    let dead = ledger::dead_lettered_ids(&mut conn, &dlq_stream).await;
    assert_eq!(dead.len(), 12);
    assert!(
        ledger::pending_entries(&mut conn, stream, "recorder")
            .await
            .is_empty()
    );

    // Metrics, per path, and the identity between them.
    assert_eq!(m.rejected.get(), 5, "rejected");
    assert_eq!(m.retry.get(), 5 + 15, "retry: 5 once, 5 three times");
    assert_eq!(
        m.trap(streamhost::TrapKind::Timeout).get(),
        6,
        "2 × 3 timeouts"
    );
    assert_eq!(m.retried.get(), 5 + 10 + 4, "retried");
    assert_eq!(m.dead_lettered.get(), 12, "dead-lettered");
    assert_eq!(m.acked.get(), 25, "acked");
    assert_eq!(m.received.get(), 20 + 5 + 10 + 15 + 6, "one per invocation");
    assert_eq!(
        failed_total(&m),
        m.retried.get() + m.dead_lettered.get(),
        "every failure is either retried or dead-lettered"
    );
    assert_eq!(m.postponed.get(), 0);
}

/// No instance can be made (the pool is exhausted): each attempt counts, and
/// after `max_attempts` the entry is dead-lettered as `instantiate` instead
/// of being retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instantiation_failure_dead_letters_as_instantiate_after_max_attempts() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "no-instance";
    let mut p = recorder(stream);
    p.concurrency = 1;
    let dlq_stream = p.dlq_stream();
    let cfg = config(&redis.url(), vec![p.clone()]);
    let options = streamhost::plugin::EngineOptions {
        max_instances: 8,
        ..streamhost::engine_options(&cfg)
    };
    let engine = streamhost::plugin::WasmEngine::new(&options).expect("engine");
    let plugin = streamhost::load_plugins(&cfg, &engine)
        .await
        .expect("load")
        .remove(0);
    // Take every pool slot.
    let mut held = Vec::new();
    while let Ok(instance) = plugin.instantiate().await {
        held.push(instance);
        assert!(held.len() < 1000, "the pool never ran out");
    }
    let ids = produce(&mut conn, stream, 4, |i| field("n", &i.to_string())).await;

    let registry = Metrics::new();
    let m = registry.plugin("recorder", stream);
    let ctx = Arc::new(PluginContext::new(plugin, p, m.clone()));
    let shutdown = CancellationToken::new();
    let endpoint = streamhost::connection::Endpoint::single(&redis.url());
    let run = tokio::spawn(streamhost::run_plugin(ctx, endpoint, shutdown.clone()));
    let done = wait_until(Duration::from_secs(30), || async {
        xlen(&mut conn.clone(), &dlq_stream).await == 4
    })
    .await;
    shutdown.cancel();
    run.await.expect("join").expect("consumer ran");
    assert!(
        done,
        "not dead-lettered: {} in the DLQ",
        xlen(&mut conn, &dlq_stream).await
    );
    drop(held);

    let letters = dlq::range(&mut conn, &dlq_stream, "-", 10)
        .await
        .expect("DLQ");
    let mut seen: Vec<&str> = letters
        .iter()
        .filter_map(|d| d.meta(meta::SOURCE_ID))
        .collect();
    seen.sort();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(seen, want);
    for d in &letters {
        assert_eq!(d.meta(meta::REASON), Some("instantiate"));
        assert_eq!(d.meta(meta::ATTEMPTS), Some("3"));
        assert!(
            d.meta(meta::ERROR)
                .is_some_and(|e| e.contains("instantiat")),
            "{:?}",
            d.meta(meta::ERROR)
        );
    }
    assert_eq!(pending(&mut conn, stream, "recorder").await, 0);
    assert_eq!(m.instantiate.get(), 12, "three attempts each");
    assert_eq!(m.retried.get(), 8);
    assert_eq!(m.dead_lettered.get(), 4);
    assert_eq!(failed_total(&m), m.retried.get() + m.dead_lettered.get());
}

/// Redis out of memory refuses commits that write (an emit) but not a plain
/// ack or a publish: the refused entries stay pending, are neither
/// dead-lettered nor charged an attempt, and are committed once Redis
/// recovers; the others flow meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_refused_while_redis_is_out_of_memory_is_committed_once_it_recovers() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "oom";
    let mut p = plugin("probe", artifacts::EFFECTS_PROBE, stream);
    p.allow.emit = vec!["out:*".into()];
    p.allow.publish = vec!["news".into()];
    p.retry.max_attempts = 1;
    let dlq_stream = p.dlq_stream();
    let op = |op: &str, target: &str| {
        vec![
            ("op".to_owned(), op.as_bytes().to_vec()),
            ("target".to_owned(), target.as_bytes().to_vec()),
        ]
    };
    let emits = produce(&mut conn, stream, 5, |_| op("emit", "out:a")).await;
    let publishes = produce(&mut conn, stream, 20, |_| op("publish", "news")).await;
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("probe")
        .arg("0")
        .query_async(&mut conn)
        .await
        .expect("create group");
    config_set(&mut conn, "maxmemory", "1").await;

    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("probe", stream);
    let only_emits_pending = wait_until(Duration::from_secs(20), || async {
        let mut c = conn.clone();
        let left: Vec<String> = ledger::pending_entries(&mut c, stream, "probe")
            .await
            .into_iter()
            .map(|p| p.id)
            .collect();
        ledger::last_delivered(&mut c, stream, "probe")
            .await
            .as_deref()
            == publishes.last().map(String::as_str)
            && left == emits
            && m.postponed.get() >= 10
    })
    .await;
    let postponed_during = m.postponed.get();
    assert_eq!(
        xlen(&mut conn, &dlq_stream).await,
        0,
        "nothing dead-lettered while out of memory"
    );
    config_set(&mut conn, "maxmemory", "0").await;
    assert!(
        only_emits_pending,
        "publishes blocked behind refused commits? pending {:?}, postponed {postponed_during}",
        ledger::pending_entries(&mut conn, stream, "probe").await
    );
    let committed = wait_until(Duration::from_secs(20), || async {
        pending(&mut conn.clone(), stream, "probe").await == 0
    })
    .await;
    host.stop().await;
    assert!(committed, "refused commits never made");
    assert_eq!(
        xlen(&mut conn, "out:a").await,
        5,
        "each emit committed once"
    );
    assert_eq!(
        xlen(&mut conn, &dlq_stream).await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(m.dead_lettered.get(), 0);
    assert_eq!(
        failed_total(&m),
        0,
        "Redis's refusals are not handler failures"
    );
    assert_eq!(m.acked.get(), 25);
}

/// A delivery that reached no handler (here: the read reply went to nobody,
/// as when a timed-out `XREADGROUP` runs after the host gave up on it) does
/// not use up an attempt: with `max_attempts = 1` the entry is re-claimed
/// and handled, not dead-lettered as exhausted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_no_handler_saw_does_not_use_up_an_attempt() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "unseen";
    let mut p = recorder(stream);
    p.retry.max_attempts = 1;
    let consumer = p.consumer();
    let dlq_stream = p.dlq_stream();
    let warm = produce(&mut conn, stream, 1, |_| field("n", "0")).await;
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("recorder", stream);
    assert!(
        ledger::wait_settled(&conn, stream, "recorder", &warm[0], Duration::from_secs(20)).await
    );

    // Add and deliver to the host's consumer in one transaction, so the
    // host's own blocked read never sees them: a read reply nobody got.
    let mut tx = redis::pipe();
    tx.atomic();
    for i in 0..3 {
        tx.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("n")
            .arg(i + 1)
            .ignore();
    }
    tx.cmd("XREADGROUP")
        .arg("GROUP")
        .arg("recorder")
        .arg(&consumer)
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .ignore();
    let () = tx.query_async(&mut conn).await.expect("deliver to nobody");
    assert_eq!(pending(&mut conn, stream, "recorder").await, 3);

    let handled = wait_until(Duration::from_secs(20), || async {
        pending(&mut conn.clone(), stream, "recorder").await == 0
    })
    .await;
    host.stop().await;
    assert!(handled, "never re-claimed");
    assert_eq!(
        xlen(&mut conn, &dlq_stream).await,
        0,
        "dead-lettered an entry no handler saw"
    );
    assert_eq!(m.acked.get(), 4);
    assert_eq!(m.received.get(), 4, "each handled once");
    assert_eq!(m.no_outcome.get(), 0);
}

/// NOGROUP with a group that cannot be created (Redis out of memory): the
/// host retries with backoff and logs it once, then creates the group when
/// Redis recovers — without calling it a *re*creation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_group_that_cannot_be_created_backs_off_and_logs_once() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "nogroup";
    let ids = produce(&mut conn, stream, 10, |i| field("n", &i.to_string())).await;
    config_set(&mut conn, "maxmemory", "1").await;
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .expect("RESETSTAT");
    let dir = tempfile::tempdir().expect("temp dir");
    let host = HostProcess::spawn(
        dir.path(),
        "nogroup",
        &config(&redis.url(), vec![recorder(stream)]),
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = ledger::strip_ansi(&host.log());
    let creates = xgroup_creates(&mut conn).await;
    config_set(&mut conn, "maxmemory", "0").await;
    let settled = ledger::wait_settled(
        &conn,
        stream,
        "recorder",
        ids.last().expect("ids"),
        Duration::from_secs(20),
    )
    .await;
    let after = ledger::strip_ansi(&host.log());
    drop(host);

    // One line per group that cannot be created: the source stream's, and
    // the plugin's redelivery stream's (read by the same group).
    let cannot = |key: &str| {
        log.lines()
            .filter(|l| l.contains("cannot create the consumer group"))
            .filter(|l| l.contains(&format!("stream=\"{key}\"")))
            .count()
    };
    assert_eq!(cannot(stream), 1, "log:\n{log}");
    assert_eq!(
        cannot(&format!("redeliver:{stream}:recorder")),
        1,
        "log:\n{log}"
    );
    assert!(
        log.lines().count() < 30,
        "{} log lines in 4 s:\n{log}",
        log.lines().count()
    );
    assert!(
        creates <= 40,
        "{creates} XGROUP CREATE calls in 4 s: no backoff"
    );
    assert!(
        settled,
        "never consumed after Redis recovered; log:\n{after}"
    );
    assert!(after.contains("created consumer group"), "log:\n{after}");
    assert!(
        !after.contains("was missing"),
        "a group that never existed was called recreated:\n{after}"
    );
}

async fn xgroup_creates(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_xgroup|create:calls="))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// 60 entries of 10 MB with the default `batch = 256`: the read-ahead byte
/// budget keeps the host's peak memory far below what the batch would hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_entries_keep_memory_bounded_by_the_read_ahead_budget() {
    const N: usize = 60;
    const SIZE: usize = 10 << 20;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "large";
    let mut last = String::new();
    for i in 0..N {
        let mut blob = vec![b'x'; SIZE];
        blob[0] = b'0' + (i % 10) as u8;
        last = redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("blob")
            .arg(blob)
            .query_async(&mut conn)
            .await
            .expect("XADD");
    }
    let mut p = recorder(stream);
    p.batch = 256;
    p.limits.memory_mib = 128;
    let dir = tempfile::tempdir().expect("temp dir");
    let host = HostProcess::spawn(dir.path(), "large", &config(&redis.url(), vec![p]));
    let started = Instant::now();
    let settled =
        ledger::wait_settled(&conn, stream, "recorder", &last, Duration::from_secs(120)).await;
    let peak = peak_rss_mib(host.child.id());
    eprintln!(
        "{N} entries of {} MiB: peak RSS {peak} MiB, {:?}",
        SIZE >> 20,
        started.elapsed()
    );
    assert!(settled, "log:\n{}", host.log_tail());
    assert!(peak < 400, "peak RSS {peak} MiB for {N} entries of 10 MiB");
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .expect("VmHWM")
}
