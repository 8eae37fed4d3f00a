//! Real host processes stopped the hard way (SIGTERM under load, kill -9,
//! SIGSTOP/SIGCONT): nothing handled is left unacked, nothing unhandled is
//! acked, abandoned entries are claimed by another host, nothing is lost.
//! The `recorder` plugin logs every id it handles; its lines are the ledger
//! of what ran.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use streamhost::config::PluginConfig;
use streamhost_tests::ledger::{self, Account, Handled, id_key};
use streamhost_tests::*;

const GROUP: &str = "recorder";

/// A recorder plugin table for a named consumer.
fn recorder(stream: &str, consumer: &str) -> PluginConfig {
    let mut p = plugin("recorder", artifacts::RECORDER, stream);
    p.consumer = Some(consumer.to_owned());
    p.batch = 200;
    p
}

/// An entry that takes `sleep_ms` to handle; every `reject_every`th is rejected.
fn slow(i: usize, sleep_ms: u64, reject_every: usize) -> Vec<(String, Vec<u8>)> {
    let mut fields = vec![
        ("n".to_owned(), i.to_string().into_bytes()),
        ("sleep_ms".to_owned(), sleep_ms.to_string().into_bytes()),
    ];
    if reject_every > 0 && i % reject_every == reject_every - 1 {
        fields.push(("reject".to_owned(), b"1".to_vec()));
    }
    fields
}

/// Ids of `ids` whose index is a reject under [`slow`].
fn rejects(ids: &[String], reject_every: usize) -> BTreeSet<String> {
    ids.iter()
        .enumerate()
        .filter(|(i, _)| i % reject_every == reject_every - 1)
        .map(|(_, id)| id.clone())
        .collect()
}

/// Whether the group has read at least up to `id`.
async fn read_past(conn: &mut MultiplexedConnection, stream: &str, id: &str) -> bool {
    ledger::last_delivered(conn, stream, GROUP)
        .await
        .is_some_and(|last| id_key(&last) >= id_key(id))
}

/// Stops a host with SIGTERM and checks that it drains and exits 0.
fn terminate(host: &mut HostProcess) {
    host.signal("-TERM");
    let code = host.wait(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "exit after SIGTERM; log:\n{}",
        host.log_tail()
    );
}

/// Kills a host with SIGKILL and waits for it to be gone.
fn kill(host: &mut HostProcess) {
    host.signal("-KILL");
    let status = host.child.wait().expect("wait for the killed host");
    assert!(!status.success(), "killed host exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_acks_exactly_what_was_handled() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:load";
    let ids = produce(&mut conn, stream, 20_000, |i| slow(i, 1, 0)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = recorder(stream, "host-a");
    p.concurrency = 4;
    let mut host = HostProcess::spawn(dir.path(), "host-a", &config(&redis.url(), vec![p]));
    assert!(
        wait_until(Duration::from_secs(60), || async {
            read_past(&mut conn.clone(), stream, &ids[3000]).await
        })
        .await,
        "host did not get going; log:\n{}",
        host.log_tail()
    );

    terminate(&mut host);

    let handled = ledger::recorder_handled(&host.log());
    let handled_set: BTreeSet<&str> = handled.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(
        handled_set.len(),
        handled.len(),
        "one host handles each entry once"
    );
    let pending = ledger::pending_entries(&mut conn, stream, GROUP).await;
    let last = ledger::last_delivered(&mut conn, stream, GROUP)
        .await
        .expect("group exists");
    let pending_set: BTreeSet<&str> = pending.iter().map(|p| p.id.as_str()).collect();
    let acked: BTreeSet<&str> = ids
        .iter()
        .filter(|id| id_key(id) <= id_key(&last) && !pending_set.contains(id.as_str()))
        .map(String::as_str)
        .collect();
    eprintln!(
        "SIGTERM under load: produced {}, handled {}, acked {}, pending (delivered, unhandled) {}, never delivered {}",
        ids.len(),
        handled.len(),
        acked.len(),
        pending.len(),
        ids.iter().filter(|id| id_key(id) > id_key(&last)).count()
    );
    assert!(
        handled.len() < ids.len(),
        "the signal must arrive mid-run for this test to mean anything"
    );
    let handled_not_acked: Vec<_> = handled_set.difference(&acked).collect();
    let acked_not_handled: Vec<_> = acked.difference(&handled_set).collect();
    assert!(
        handled_not_acked.is_empty(),
        "handled but left unacked: {handled_not_acked:?}"
    );
    assert!(
        acked_not_handled.is_empty(),
        "acked without being handled: {acked_not_handled:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_the_same_consumer_name_resumes_its_pending_entries() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:restart";
    let ids = produce(&mut conn, stream, 3_000, |i| slow(i, 1, 0)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = recorder(stream, "host-a");
    // Far beyond the test: only the restart's own-pending replay can resume them.
    p.claim.min_idle_ms = 600_000;
    let cfg = config(&redis.url(), vec![p]);
    let mut first = HostProcess::spawn(dir.path(), "first", &cfg);
    assert!(
        wait_until(Duration::from_secs(60), || async {
            let mut c = conn.clone();
            read_past(&mut c, stream, &ids[1000]).await
                && pending(&mut c, stream, GROUP).await >= 300
        })
        .await,
        "first host did not get going; log:\n{}",
        first.log_tail()
    );
    kill(&mut first);
    let held = ledger::pending_entries(&mut conn, stream, GROUP).await;
    assert!(!held.is_empty());

    let mut second = HostProcess::spawn(dir.path(), "second", &cfg);
    let last = ids.last().expect("ids").clone();
    assert!(
        ledger::wait_settled(&conn, stream, GROUP, &last, Duration::from_secs(60)).await,
        "pending entries not resumed; log:\n{}",
        second.log_tail()
    );
    terminate(&mut second);

    let (before, after) = (
        ledger::recorder_handled(&first.log()),
        ledger::recorder_handled(&second.log()),
    );
    let resumed: HashMap<&str, u32> = after.iter().map(|h| (h.id.as_str(), h.attempt)).collect();
    for entry in &held {
        let attempt = resumed.get(entry.id.as_str()).copied();
        assert!(
            attempt.is_some_and(|a| a >= 2),
            "{} was pending at the kill: resumed with attempt {attempt:?}, want >= 2",
            entry.id
        );
    }
    let all: Vec<Handled> = before.iter().chain(&after).cloned().collect();
    let pending = ledger::pending_entries(&mut conn, stream, GROUP).await;
    let account = Account::settle(&ids, |_| 1, &all, &pending, &[]);
    account.print("kill -9 + restart with the same consumer");
    eprintln!("  pending at the kill: {}", held.len());
    assert!(account.lost.is_empty(), "lost: {:?}", account.lost);
    let ran_before: BTreeSet<&str> = before.iter().map(|h| h.id.as_str()).collect();
    for id in account.duplicated.keys() {
        assert!(
            ran_before.contains(id.as_str()),
            "{id} handled twice but not before the kill"
        );
    }
    assert!(
        !ledger::strip_ansi(&second.log()).contains("claimed entries abandoned"),
        "the restart must resume by replaying its own pending entries, not by claiming"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_1000_pending_second_host_claims_them_nothing_lost() {
    const REJECT_EVERY: usize = 25;
    const FLAKY_EVERY: usize = 40;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:failover";
    let ids = produce(&mut conn, stream, 6_000, |i| {
        let mut f = slow(i, 1, REJECT_EVERY);
        if i % FLAKY_EVERY == 7 {
            f.push(("fail_times".to_owned(), b"1".to_vec()));
        }
        f
    })
    .await;
    let flaky: BTreeSet<&str> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % FLAKY_EVERY == 7)
        .map(|(_, id)| id.as_str())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = recorder(stream, "host-a");
    a.batch = 400;
    let mut host_a = HostProcess::spawn(dir.path(), "host-a", &config(&redis.url(), vec![a]));
    assert!(
        wait_until(Duration::from_secs(60), || async {
            let mut c = conn.clone();
            ledger::recorder_handled(&host_a.log()).len() >= 300
                && pending(&mut c, stream, GROUP).await >= 1000
        })
        .await,
        "host A never held 1000 entries; log:\n{}",
        host_a.log_tail()
    );
    kill(&mut host_a);
    let held = ledger::pending_entries(&mut conn, stream, GROUP).await;
    assert!(held.len() >= 1000, "held {}", held.len());

    let mut host_b = HostProcess::spawn(
        dir.path(),
        "host-b",
        &config(&redis.url(), vec![recorder(stream, "host-b")]),
    );
    let last = ids.last().expect("ids").clone();
    assert!(
        ledger::wait_settled(&conn, stream, GROUP, &last, Duration::from_secs(120)).await,
        "host B did not finish; log:\n{}",
        host_b.log_tail()
    );
    terminate(&mut host_b);

    let (log_a, log_b) = (
        ledger::recorder_handled(&host_a.log()),
        ledger::recorder_handled(&host_b.log()),
    );
    let all: Vec<Handled> = log_a.iter().chain(&log_b).cloned().collect();
    let pending = ledger::pending_entries(&mut conn, stream, GROUP).await;
    let dlq = ledger::dead_lettered_ids(&mut conn, &format!("dlq:{stream}:recorder")).await;
    let expected = |id: &str| if flaky.contains(id) { 2 } else { 1 };
    let account = Account::settle(&ids, expected, &all, &pending, &dlq);
    account.print("kill -9 failover");
    let claimed = ledger::sum_counts(&host_b.log(), "claimed entries abandoned");
    eprintln!(
        "  held by host A at the kill: {}; claimed by host B: {claimed}; handled by A: {}, by B: {}",
        held.len(),
        log_a.len(),
        log_b.len()
    );

    assert!(account.lost.is_empty(), "lost: {:?}", account.lost);
    assert_eq!(
        account.dead_lettered_twice, 0,
        "an entry dead-lettered twice"
    );
    let dead: BTreeSet<String> = dlq.iter().cloned().collect();
    assert_eq!(
        dead,
        rejects(&ids, REJECT_EVERY),
        "exactly the rejected entries are dead-lettered"
    );
    assert_eq!(
        claimed,
        held.len() as u64,
        "host B claims every entry host A held"
    );
    let ran_on_a: BTreeSet<&str> = log_a.iter().map(|h| h.id.as_str()).collect();
    for id in account.duplicated.keys() {
        assert!(
            ran_on_a.contains(id.as_str()),
            "{id} handled twice but never by the killed host"
        );
    }
    let on_b_once: Vec<Handled> = log_b
        .iter()
        .filter(|h| !flaky.contains(h.id.as_str()))
        .cloned()
        .collect();
    assert_once_per_host("host B", &on_b_once);
    let on_b: HashMap<&str, u32> = log_b.iter().map(|h| (h.id.as_str(), h.attempt)).collect();
    for entry in &held {
        let attempt = on_b.get(entry.id.as_str()).copied();
        assert!(
            attempt.is_some_and(|n| u64::from(n) > entry.deliveries),
            "{} (delivered {} times to A) handled by B with attempt {attempt:?}",
            entry.id,
            entry.deliveries
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_stopped_past_min_idle_then_resumed_corrupts_nothing() {
    const REJECT_EVERY: usize = 10;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:stopped";
    let ids = produce(&mut conn, stream, 2_000, |i| slow(i, 2, REJECT_EVERY)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut host_a = HostProcess::spawn(
        dir.path(),
        "host-a",
        &config(&redis.url(), vec![recorder(stream, "host-a")]),
    );
    assert!(
        wait_until(Duration::from_secs(60), || async {
            ledger::pending_entries(&mut conn.clone(), stream, GROUP)
                .await
                .len()
                >= 600
        })
        .await,
        "host A never held 600 entries; log:\n{}",
        host_a.log_tail()
    );
    host_a.signal("-STOP");
    let held = ledger::pending_entries(&mut conn, stream, GROUP).await;

    let mut host_b = HostProcess::spawn(
        dir.path(),
        "host-b",
        &config(&redis.url(), vec![recorder(stream, "host-b")]),
    );
    let last = ids.last().expect("ids").clone();
    let settled = ledger::wait_settled(&conn, stream, GROUP, &last, Duration::from_secs(120)).await;
    host_a.signal("-CONT");
    assert!(
        settled,
        "host B did not finish; log:\n{}",
        host_b.log_tail()
    );
    let refused = "entry was claimed by another consumer meanwhile";
    assert!(
        ledger::wait_for_log(&host_a, refused, Duration::from_secs(30)).await,
        "host A's late dead-lettering was not refused; log:\n{}",
        host_a.log_tail()
    );
    // SIGTERM drains whatever host A still held: every late ack and
    // dead-letter attempt has happened once it exits.
    terminate(&mut host_a);
    terminate(&mut host_b);

    let (log_a, log_b) = (
        ledger::recorder_handled(&host_a.log()),
        ledger::recorder_handled(&host_b.log()),
    );
    let all: Vec<Handled> = log_a.iter().chain(&log_b).cloned().collect();
    let pending = ledger::pending_entries(&mut conn, stream, GROUP).await;
    let dlq = ledger::dead_lettered_ids(&mut conn, &format!("dlq:{stream}:recorder")).await;
    let account = Account::settle(&ids, |_| 1, &all, &pending, &dlq);
    account.print("SIGSTOP past min_idle, then SIGCONT");
    eprintln!(
        "  held by host A when stopped: {}; late dead-letterings refused: {}",
        held.len(),
        ledger::log_lines(&host_a.log(), refused).len()
    );
    assert!(pending.is_empty(), "still pending: {pending:?}");
    assert!(account.lost.is_empty(), "lost: {:?}", account.lost);
    assert_eq!(
        account.dead_lettered_twice, 0,
        "the late host dead-lettered an entry again"
    );
    let dead: BTreeSet<String> = dlq.iter().cloned().collect();
    assert_eq!(dead, rejects(&ids, REJECT_EVERY));
    assert_once_per_host("host B", &log_b);
    let ran_on_a: BTreeSet<&str> = log_a.iter().map(|h| h.id.as_str()).collect();
    for id in account.duplicated.keys() {
        assert!(
            ran_on_a.contains(id.as_str()),
            "{id} handled twice but never by the stopped host"
        );
    }
}

/// A host hands each entry to its handler once: entries it holds (queued,
/// handling, awaiting ack or retry) are not claimed again by its own claimer.
fn assert_once_per_host(host: &str, handled: &[Handled]) {
    let mut runs: HashMap<&str, usize> = HashMap::new();
    for h in handled {
        *runs.entry(h.id.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{host} handled {} entries more than once, e.g. {:?}",
        twice.len(),
        twice.iter().take(5).collect::<Vec<_>>()
    );
}

/// The dead-letter script itself: a consumer that lost the entry to a claim
/// can neither dead-letter nor ack it; the owner can, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_script_refuses_a_consumer_that_lost_the_entry() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let (stream, dlq, group) = ("events:owned", "dlq:events:owned", "g");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .expect("create group");
    let id: String = redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("data")
        .arg(&b"\x00\xff"[..])
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(group)
        .arg("a")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("read as a");
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(stream)
        .arg(group)
        .arg("b")
        .arg(0)
        .arg(&id)
        .query_async(&mut conn)
        .await
        .expect("claim as b");

    let fields = vec![(b"data".to_vec(), b"\x00\xff".to_vec())];
    let dead_letter = async |conn: &mut redis::aio::MultiplexedConnection, consumer: &str| {
        let letter = streamhost::dlq::Letter {
            pending_stream: stream,
            pending_id: &id,
            group,
            consumer,
            dlq,
            source_stream: stream,
            source_id: &id,
            plugin: "p",
            digest: "sha256:0",
            reason: "rejected",
            error: "",
            attempts: 1,
            fields: &fields,
            origin: &[],
        };
        match streamhost::dlq::dead_letter(conn, &letter).await {
            Ok(streamhost::dlq::Written::Moved(dlq_id)) => Some(dlq_id),
            Ok(streamhost::dlq::Written::NotOwner) => None,
            Err(e) => panic!("script runs: {e}"),
        }
    };
    let late: Option<String> = dead_letter(&mut conn, "a").await;
    assert_eq!(late, None, "the consumer that lost the entry is refused");
    assert_eq!(xlen(&mut conn, dlq).await, 0);
    let owner = ledger::pending_entries(&mut conn, stream, group).await;
    assert_eq!(owner.len(), 1);
    assert_eq!(owner[0].consumer, "b", "still pending on its new owner");

    let moved: Option<String> = dead_letter(&mut conn, "b").await;
    assert!(moved.is_some(), "the owner dead-letters it");
    assert_eq!(xlen(&mut conn, dlq).await, 1);
    assert_eq!(
        pending(&mut conn, stream, group).await,
        0,
        "and it is acked"
    );
    let again: Option<String> = dead_letter(&mut conn, "b").await;
    assert_eq!(
        again, None,
        "an entry no longer pending is not dead-lettered twice"
    );
    assert_eq!(xlen(&mut conn, dlq).await, 1);
}

/// The attempt number comes from Redis: failed attempts on a host that is
/// then killed count against `max_attempts` on the host that takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempt_count_survives_a_crash_and_counts_against_max_attempts() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:attempts";
    let id = produce(&mut conn, stream, 1, |_| {
        vec![("fail_times".to_owned(), b"99".to_vec())]
    })
    .await
    .remove(0);
    let with_retries = |consumer: &str| {
        let mut p = recorder(stream, consumer);
        p.retry.max_attempts = 4;
        p.retry.initial_ms = 300;
        p.retry.max_ms = 5_000;
        config(&redis.url(), vec![p])
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut host_a = HostProcess::spawn(dir.path(), "host-a", &with_retries("host-a"));
    assert!(
        ledger::wait_for_log(
            &host_a,
            &format!("recorder handled {id} attempt 2"),
            Duration::from_secs(30)
        )
        .await,
        "log:\n{}",
        host_a.log_tail()
    );
    kill(&mut host_a);
    let mut host_b = HostProcess::spawn(dir.path(), "host-b", &with_retries("host-b"));
    let dlq = format!("dlq:{stream}:recorder");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            xlen(&mut conn.clone(), &dlq).await == 1
        })
        .await,
        "never dead-lettered; log:\n{}",
        host_b.log_tail()
    );
    terminate(&mut host_b);

    let attempts = |log: &str| -> Vec<u32> {
        ledger::recorder_handled(log)
            .iter()
            .map(|h| h.attempt)
            .collect()
    };
    let (on_a, on_b) = (attempts(&host_a.log()), attempts(&host_b.log()));
    let all: Vec<u32> = on_a.iter().chain(&on_b).copied().collect();
    assert_eq!(all, [1, 2, 3, 4], "attempts on A {on_a:?}, on B {on_b:?}");
    assert!(
        !on_b.is_empty() && on_b[0] >= 3,
        "B continued the count: {on_b:?}"
    );
    let letters = streamhost::dlq::range(&mut conn, &dlq, "-", 10)
        .await
        .expect("DLQ");
    assert_eq!(letters[0].meta(streamhost::dlq::meta::ATTEMPTS), Some("4"));
    assert_eq!(
        letters[0].meta(streamhost::dlq::meta::REASON),
        Some("attempts-exhausted")
    );
    assert_eq!(
        letters[0].meta(streamhost::dlq::meta::CONSUMER),
        Some("host-b")
    );
}

/// An entry whose handling kills the host every time is not handed to a
/// handler again once its deliveries exceed `max_attempts`: it is
/// dead-lettered, and the entries after it flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_that_keeps_killing_its_host_is_dead_lettered_after_max_attempts() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:killer";
    let killer_fields = vec![("sleep_ms".to_owned(), b"60000".to_vec())];
    let killer = produce(&mut conn, stream, 1, |_| killer_fields.clone())
        .await
        .remove(0);
    let mut p = recorder(stream, "host-a");
    p.retry.max_attempts = 2;
    p.limits.timeout_ms = 120_000;
    p.claim.min_idle_ms = 600_000; // restarts resume it by replaying, at once
    let cfg = config(&redis.url(), vec![p]);
    let dir = tempfile::tempdir().expect("temp dir");
    for attempt in 1..=2 {
        let mut host = HostProcess::spawn(dir.path(), &format!("round-{attempt}"), &cfg);
        let handling = format!("recorder handled {killer} attempt {attempt}");
        assert!(
            ledger::wait_for_log(&host, &handling, Duration::from_secs(30)).await,
            "log:\n{}",
            host.log_tail()
        );
        kill(&mut host);
    }
    let after = produce(&mut conn, stream, 50, |i| {
        vec![("n".to_owned(), i.to_string().into_bytes())]
    })
    .await;
    let mut last_host = HostProcess::spawn(dir.path(), "round-3", &cfg);
    let last = after.last().expect("ids").clone();
    let dlq = format!("dlq:{stream}:recorder");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let mut c = conn.clone();
            xlen(&mut c, &dlq).await == 1 && ledger::settled(&mut c, stream, GROUP, &last).await
        })
        .await,
        "log:\n{}",
        last_host.log_tail()
    );
    terminate(&mut last_host);

    let handled = ledger::recorder_handled(&last_host.log());
    assert!(
        handled.iter().all(|h| h.id != killer),
        "the killer entry ran a third time"
    );
    assert_eq!(handled.len(), after.len(), "the entries after it flowed");
    let letters = streamhost::dlq::range(&mut conn, &dlq, "-", 10)
        .await
        .expect("DLQ");
    let d = &letters[0];
    assert_eq!(
        d.meta(streamhost::dlq::meta::SOURCE_ID),
        Some(killer.as_str())
    );
    assert_eq!(
        d.meta(streamhost::dlq::meta::REASON),
        Some("attempts-exhausted")
    );
    assert_eq!(d.meta(streamhost::dlq::meta::ATTEMPTS), Some("3"));
    assert!(
        d.meta(streamhost::dlq::meta::ERROR)
            .is_some_and(|e| e.contains("died or stopped")),
        "{:?}",
        d.meta(streamhost::dlq::meta::ERROR)
    );
    assert_eq!(d.fields, raw(&killer_fields));
}

/// Pending entries deleted from the stream (XDEL, trimming) are counted and
/// dropped, whether this consumer replays them or claims them from another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_deleted_while_pending_are_counted_and_dropped() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:deleted";
    let ids = produce(&mut conn, stream, 2_000, |i| slow(i, 1, 0)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut hosts: Vec<HostProcess> = ["host-a", "host-c"]
        .iter()
        .map(|name| {
            HostProcess::spawn(
                dir.path(),
                name,
                &config(&redis.url(), vec![recorder(stream, name)]),
            )
        })
        .collect();
    let held_by = |pending: &[ledger::PendingEntry], consumer: &str| -> Vec<String> {
        pending
            .iter()
            .filter(|p| p.consumer == consumer)
            .map(|p| p.id.clone())
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(60), || async {
            let pending = ledger::pending_entries(&mut conn.clone(), stream, GROUP).await;
            held_by(&pending, "host-a").len() >= 50 && held_by(&pending, "host-c").len() >= 50
        })
        .await,
        "hosts never held entries"
    );
    for host in &mut hosts {
        kill(host);
    }
    let pending = ledger::pending_entries(&mut conn, stream, GROUP).await;
    let mut deleted = Vec::new();
    for consumer in ["host-a", "host-c"] {
        deleted.extend(held_by(&pending, consumer).into_iter().take(10));
    }
    let n: u64 = redis::cmd("XDEL")
        .arg(stream)
        .arg(&deleted)
        .query_async(&mut conn)
        .await
        .expect("XDEL");
    assert_eq!(n, 20);

    // Same consumer name as host A: replays A's entries, claims C's.
    let host = InProcessHost::start(config(&redis.url(), vec![recorder(stream, "host-a")])).await;
    let m = host.metrics("recorder", stream);
    let last = ids.last().expect("ids").clone();
    assert!(
        ledger::wait_settled(&conn, stream, GROUP, &last, Duration::from_secs(60)).await,
        "not settled"
    );
    host.stop().await;
    assert_eq!(
        m.trimmed.get(),
        20,
        "10 replayed and 10 claimed deleted entries, counted"
    );
    assert!(m.claimed.get() >= 40, "host C's other entries were claimed");
}
