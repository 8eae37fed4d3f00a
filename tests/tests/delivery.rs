//! Delivery guarantees: retries with backoff, dead-lettering of poison
//! entries with their metadata, and consumption that survives a Redis restart,
//! a `FLUSHALL` and a deleted stream.

use std::time::{Duration, SystemTime};

use streamhost::config::{Backoff, RetryConfig};
use streamhost::dlq::{self, meta};
use streamhost_tests::ledger::{self, Account, id_key};
use streamhost_tests::*;

fn plain(i: usize) -> Vec<(String, Vec<u8>)> {
    vec![("n".to_owned(), i.to_string().into_bytes())]
}

fn at_least(later: SystemTime, earlier: SystemTime, min: Duration, what: &str) {
    let gap = later.duration_since(earlier).unwrap_or_default();
    assert!(gap >= min, "{what}: {gap:?} apart, want at least {min:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_entry_is_acked_on_attempt_n_plus_1_after_backoff_without_blocking_others() {
    const FAIL_TIMES: u32 = 3;
    const INITIAL_MS: u64 = 300;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:flaky";
    let mut p = plugin("flaky", artifacts::FLAKY, stream);
    p.retry = RetryConfig {
        max_attempts: 5,
        backoff: Backoff::Exponential,
        initial_ms: INITIAL_MS,
        max_ms: 10_000,
        ..RetryConfig::default()
    };
    let flaky = produce(&mut conn, stream, 1, |_| {
        vec![("fail_times".to_owned(), FAIL_TIMES.to_string().into_bytes())]
    })
    .await
    .remove(0);
    let others = produce(&mut conn, stream, 300, plain).await;
    let last = others.last().expect("ids").clone();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut host = HostProcess::spawn(dir.path(), "flaky", &config(&redis.url(), vec![p]));

    // Everything after the failing entry is handled while it waits.
    let only_flaky_pending = wait_until(Duration::from_secs(30), || async {
        let mut c = conn.clone();
        let pending = ledger::pending_entries(&mut c, stream, "flaky").await;
        ledger::last_delivered(&mut c, stream, "flaky")
            .await
            .is_some_and(|l| id_key(&l) >= id_key(&last))
            && pending.len() == 1
            && pending[0].id == flaky
    })
    .await;
    assert!(
        only_flaky_pending,
        "others blocked behind a retry? log:\n{}",
        host.log_tail()
    );
    assert!(
        ledger::wait_settled(&conn, stream, "flaky", &last, Duration::from_secs(30)).await,
        "flaky entry never acked; log:\n{}",
        host.log_tail()
    );
    let acked_by = SystemTime::now();
    host.signal("-TERM");
    assert_eq!(host.wait(Duration::from_secs(30)), Some(0));

    let retries: Vec<(u32, SystemTime)> =
        ledger::log_lines(&host.log(), "handler asked for a retry")
            .into_iter()
            .filter(|l| l.text.contains(&format!("id=\"{flaky}\"")))
            .map(|l| {
                let at = l.text.find("attempt=").expect("attempt field") + "attempt=".len();
                let n = l.text[at..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("attempt number");
                (n, l.at)
            })
            .collect();
    let attempts: Vec<u32> = retries.iter().map(|r| r.0).collect();
    assert_eq!(
        attempts,
        [1, 2, 3],
        "failed attempts; log:\n{}",
        host.log_tail()
    );
    // Jitter takes up to 20% off the computed delay.
    let min = |attempt: u32| Duration::from_millis(INITIAL_MS << (attempt - 1)) * 4 / 5;
    for pair in retries.windows(2) {
        let ((n, t1), (_, t2)) = (pair[0], pair[1]);
        at_least(t2, t1, min(n), &format!("attempts {n} and {}", n + 1));
    }
    at_least(
        acked_by,
        retries[2].1,
        min(3),
        "attempt 3 and the ack of attempt 4",
    );
    assert_eq!(xlen(&mut conn, &format!("dlq:{stream}:flaky")).await, 0);
    eprintln!(
        "flaky: attempts at +0, +{:?}, +{:?}, acked by +{:?}",
        retries[1]
            .1
            .duration_since(retries[0].1)
            .unwrap_or_default(),
        retries[2]
            .1
            .duration_since(retries[0].1)
            .unwrap_or_default(),
        acked_by.duration_since(retries[0].1).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entry_is_dead_lettered_after_max_attempts_with_metadata_and_others_flow() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:poison";
    let mut p = plugin("flaky", artifacts::FLAKY, stream);
    p.retry.max_attempts = 3;
    let before = produce(&mut conn, stream, 100, plain).await;
    let poison_fields: Vec<(String, Vec<u8>)> = vec![
        ("fail_times".to_owned(), b"99".to_vec()),
        ("blob".to_owned(), (0..=255u8).collect()),
        ("empty".to_owned(), Vec::new()),
        ("text".to_owned(), "crème brûlée\r\n".as_bytes().to_vec()),
        (
            "dlq.reason".to_owned(),
            b"a user field named like metadata".to_vec(),
        ),
    ];
    let poison = produce(&mut conn, stream, 1, |_| poison_fields.clone())
        .await
        .remove(0);
    let after = produce(&mut conn, stream, 100, plain).await;
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("flaky", stream);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            m.dead_lettered.get() >= 1 && m.acked.get() >= 200
        })
        .await,
        "dead-lettered {}, acked {}",
        m.dead_lettered.get(),
        m.acked.get()
    );
    host.stop().await;

    assert_eq!(
        m.acked.get(),
        (before.len() + after.len()) as u64,
        "the others all flowed"
    );
    assert_eq!(
        m.received.get(),
        203,
        "each entry once, the poison one 3 times"
    );
    assert_eq!(pending(&mut conn, stream, "flaky").await, 0);
    let letters = dlq::range(&mut conn, &format!("dlq:{stream}:flaky"), "-", 10)
        .await
        .expect("read DLQ");
    assert_eq!(letters.len(), 1);
    let d = &letters[0];
    let component = std::fs::read(artifacts::FLAKY).expect("read component");
    for (name, want) in [
        (meta::REASON, "attempts-exhausted"),
        (meta::ATTEMPTS, "3"),
        (meta::SOURCE_ID, poison.as_str()),
        (meta::SOURCE_STREAM, stream),
        (meta::GROUP, "flaky"),
        (meta::CONSUMER, "flaky-test"),
        (meta::PLUGIN, "flaky"),
        (
            meta::DIGEST,
            streamhost::plugin::digest(&component).as_str(),
        ),
    ] {
        assert_eq!(d.meta(name), Some(want), "{name}");
    }
    assert!(
        d.meta(meta::ERROR)
            .is_some_and(|e| e.contains("attempt 3 of fail_times 99")),
        "error: {:?}",
        d.meta(meta::ERROR)
    );
    assert!(
        d.meta(meta::TIME_MS)
            .and_then(|t| t.parse::<u64>().ok())
            .is_some_and(|t| t > 1_600_000_000_000),
        "time: {:?}",
        d.meta(meta::TIME_MS)
    );
    assert_eq!(
        d.fields,
        raw(&poison_fields),
        "original fields byte for byte, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_run_with_aof_host_reconnects_and_loses_nothing() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut redis = TestRedis::start_with(&aof).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = connect(&redis.url()).await;
    let stream = "events:restarted";
    let ids = produce(&mut conn, stream, 4_000, |i| {
        vec![
            ("n".to_owned(), i.to_string().into_bytes()),
            ("sleep_ms".to_owned(), b"1".to_vec()),
        ]
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = plugin("recorder", artifacts::RECORDER, stream);
    p.batch = 100;
    let mut host = HostProcess::spawn(dir.path(), "host", &config(&redis.url(), vec![p]));
    assert!(
        wait_until(Duration::from_secs(60), || async {
            ledger::recorder_handled(&host.log()).len() >= 500
        })
        .await,
        "host did not get going; log:\n{}",
        host.log_tail()
    );
    let handled_before = ledger::recorder_handled(&host.log()).len();
    redis.restart(&aof).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = connect(&redis.url()).await;
    let last = ids.last().expect("ids").clone();
    assert!(
        ledger::wait_settled(&conn, stream, "recorder", &last, Duration::from_secs(120)).await,
        "host did not finish after the restart; log:\n{}",
        host.log_tail()
    );
    host.signal("-TERM");
    assert_eq!(host.wait(Duration::from_secs(30)), Some(0));

    let handled = ledger::recorder_handled(&host.log());
    let pending = ledger::pending_entries(&mut conn, stream, "recorder").await;
    let account = Account::settle(&ids, |_| 1, &handled, &pending, &[]);
    account.print("Redis restarted mid-run (AOF)");
    eprintln!(
        "  handled before the restart: {handled_before}; re-claimed after lost replies: {}",
        ledger::sum_counts(&host.log(), "re-claimed own pending entries")
    );
    assert!(handled_before < ids.len(), "the restart must come mid-run");
    assert!(account.lost.is_empty(), "lost: {:?}", account.lost);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_is_recreated_after_flushall_and_stream_deletion_and_processing_goes_on() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:vanishing";
    let host = InProcessHost::start(config(
        &redis.url(),
        vec![plugin("echo", artifacts::ECHO, stream)],
    ))
    .await;
    let m = host.metrics("echo", stream);
    let mut produced = 0u64;
    for (round, wipe) in ["start", "FLUSHALL", "DEL"].into_iter().enumerate() {
        match wipe {
            "FLUSHALL" => redis::cmd("FLUSHALL")
                .query_async::<()>(&mut conn)
                .await
                .expect("FLUSHALL"),
            "DEL" => redis::cmd("DEL")
                .arg(stream)
                .query_async::<()>(&mut conn)
                .await
                .expect("DEL"),
            _ => {}
        }
        let ids = produce(&mut conn, stream, 500, plain).await;
        produced += 500;
        let recreated = round as u64;
        assert!(
            wait_until(Duration::from_secs(30), || async {
                m.acked.get() >= produced && m.groups_recreated.get() >= recreated
            })
            .await,
            "after {wipe}: acked {} of {produced}, groups recreated {}",
            m.acked.get(),
            m.groups_recreated.get()
        );
        let last = ids.last().expect("ids");
        assert!(
            ledger::settled(&mut conn, stream, "echo", last).await,
            "after {wipe}"
        );
    }
    host.stop().await;
    assert_eq!(m.groups_recreated.get(), 2, "recreated once per wipe");
    assert_eq!(m.received.get(), 1500, "each entry handled once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_consumers_are_removed_only_when_they_own_nothing() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let (stream, group) = ("events:consumers", "echo");
    redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async::<()>(&mut conn)
        .await
        .expect("create group");
    produce(&mut conn, stream, 3, plain).await;
    // A dead consumer still holding entries, then one that holds nothing.
    redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg("gone-holding")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async::<redis::Value>(&mut conn)
        .await
        .expect("read as gone-holding");
    redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(stream)
        .arg(group)
        .arg("gone-empty")
        .query_async::<()>(&mut conn)
        .await
        .expect("create consumer");
    let mut p = plugin("echo", artifacts::ECHO, stream);
    p.claim.min_idle_ms = 600_000; // nobody claims gone-holding's entries here
    p.claim.delete_idle_consumers_ms = 300;
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            !ledger::consumers(&mut conn.clone(), stream, group)
                .await
                .contains_key("gone-empty")
        })
        .await,
        "the idle consumer with nothing pending was not removed"
    );
    // The same atomic pass looked at gone-holding, idle even longer.
    let left = ledger::consumers(&mut conn, stream, group).await;
    assert_eq!(left.get("gone-holding"), Some(&3), "{left:?}");
    assert_eq!(pending(&mut conn, stream, group).await, 3);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_policy_that_can_drop_streams_is_warned_about() {
    let redis = TestRedis::start_with(&["--maxmemory-policy", "allkeys-lru"])
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let p = plugin("echo", artifacts::ECHO, "events:evictable");
    let host = HostProcess::spawn(dir.path(), "host", &config(&redis.url(), vec![p]));
    assert!(
        ledger::wait_for_log(
            &host,
            "maxmemory-policy is allkeys-lru",
            Duration::from_secs(30)
        )
        .await,
        "no warning; log:\n{}",
        host.log_tail()
    );
}

/// Entries Redis delivered to this consumer whose read reply never reached the
/// host (a dropped connection, a Redis restart) are re-claimed and handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_whose_read_reply_was_lost_are_recovered() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:lost-replies";
    let p = plugin("echo", artifacts::ECHO, stream);
    let consumer = p
        .consumer
        .clone()
        .expect("test plugins name their consumer");
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("echo", stream);
    produce(&mut conn, stream, 100, plain).await;
    assert!(wait_until(Duration::from_secs(30), || async { m.acked.get() >= 100 }).await);

    // Added and delivered to the host's consumer in one step, so the host's
    // own reader never sees them: as if the reply had been lost.
    let mut lost = redis::pipe();
    lost.atomic();
    for i in 0..20 {
        lost.cmd("XADD").arg(stream).arg("*").arg(plain(i)).ignore();
    }
    lost.cmd("XREADGROUP")
        .arg("GROUP")
        .arg("echo")
        .arg(&consumer)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .ignore();
    lost.query_async::<()>(&mut conn)
        .await
        .expect("deliver behind the host's back");
    assert_eq!(pending(&mut conn, stream, "echo").await, 20);

    assert!(
        wait_until(Duration::from_secs(30), || async { m.acked.get() >= 120 }).await,
        "acked {}",
        m.acked.get()
    );
    host.stop().await;
    assert_eq!(m.received.get(), 120, "each entry handled once");
    assert_eq!(pending(&mut conn, stream, "echo").await, 0);
}
