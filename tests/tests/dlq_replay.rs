//! Dead letters belong to a plugin and replay reaches that plugin alone:
//! three plugins on one stream, a DLQ shared on purpose, replays that fail
//! again, entries of 100,000 fields and non-UTF-8 names kept byte for byte,
//! hostile bytes neutralised in `dlq show`, a slow replay that is never
//! reported as failed, and a replay killed with -9 that loses and
//! duplicates nothing.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use streamhost::config::{AdminConfig, DlqConfig};
use streamhost::dlq::{self, meta};
use streamhost::entry::{self, RawField};
use streamhost_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Every entry of a stream, fields as stored.
/// `entries-read` of a group, from `XINFO GROUPS`.
async fn entries_read(conn: &mut MultiplexedConnection, stream: &str, group: &str) -> Option<u64> {
    streamhost::inspect::group(conn, stream, group)
        .await
        .expect("XINFO GROUPS")
        .and_then(|g| g.entries_read)
}

/// A plain HTTP GET of the admin endpoint.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    raw
}

fn gauge(metrics: &str, plugin: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("streamhost_dlq_entries{"))
        .find(|l| l.contains(&format!("plugin=\"{plugin}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

const SHOP: &str = "events:shop";
const SHARED_DLQ: &str = "dlq:events:shop";

/// Three kinds of order, each refused by a different plugin.
fn shop_order(i: usize) -> Vec<(String, Vec<u8>)> {
    let data = match i % 3 {
        0 => format!(r#"{{"order_id":{i},"amount_cents":100,"customer":"c1"}}"#),
        // No customer: customer-totals rejects it.
        1 => format!(r#"{{"order_id":{i},"amount_cents":5}}"#),
        // No order id: order-validator rejects it; flaky keeps failing.
        _ => r#"{"customer":"c2","amount_cents":7}"#.to_owned(),
    };
    let mut fields = vec![("data".to_owned(), data.into_bytes())];
    if i % 3 == 2 {
        fields.push(("fail_times".to_owned(), b"99".to_vec()));
    }
    fields
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_plugins_on_one_stream_replay_reaches_the_failing_plugin_alone() {
    const N: usize = 30;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let shared = DlqConfig {
        stream: Some(SHARED_DLQ.to_owned()),
    };
    let mut validator = plugin("order-validator", artifacts::ORDER_VALIDATOR, SHOP);
    validator.dlq = shared.clone();
    let mut totals = plugin("customer-totals", artifacts::CUSTOMER_TOTALS, SHOP);
    totals.dlq = shared;
    let mut flaky = plugin("flaky", artifacts::FLAKY, SHOP);
    flaky.retry.max_attempts = 2;
    let mut cfg = config(&redis.url(), vec![validator, totals, flaky]);
    cfg.admin = Some(AdminConfig {
        listen: "127.0.0.1:0".to_owned(),
        refresh_ms: 100,
        token: None,
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg_path = dir.path().join("streamhost.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).expect("config")).expect("write");
    let cfg_path = cfg_path.to_str().expect("utf-8 path");
    let flaky_dlq = "dlq:events:shop:flaky";

    let checked = cli(&["check", "--config", cfg_path]);
    assert_ok(&checked);
    assert!(
        text(&checked.stdout).contains(&format!(
            "plugins order-validator, customer-totals share the dead-letter stream {SHARED_DLQ}"
        )),
        "{}",
        text(&checked.stdout)
    );

    produce(&mut conn, SHOP, N, shop_order).await;
    let listener = streamhost::AdminListener::bind("127.0.0.1:0")
        .await
        .expect("bind admin");
    let addr = listener.addr();
    let host = streamhost::Host::load(cfg.clone()).await.expect("loads");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(host.run_with_admin(Some(listener), shutdown.clone()));
    let per_kind = (N / 3) as u64;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            let mut c = conn.clone();
            xlen(&mut c, SHARED_DLQ).await == 2 * per_kind
                && xlen(&mut c, flaky_dlq).await == per_kind
        })
        .await,
        "not everything was dead-lettered"
    );

    // Counted per plugin: by status, and by the gauge.
    let status = cli(&["status", "--config", cfg_path, "--json"]);
    assert_ok(&status);
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    let lengths: HashMap<String, u64> = report["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["plugin"].as_str().unwrap_or_default().to_owned(),
                g["dlq"]["length"].as_u64().unwrap_or(999),
            )
        })
        .collect();
    for plugin in ["order-validator", "customer-totals", "flaky"] {
        assert_eq!(lengths.get(plugin), Some(&per_kind), "status of {plugin}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || async {
            let metrics = get(addr, "/metrics").await;
            ["order-validator", "customer-totals", "flaky"]
                .iter()
                .all(|p| gauge(&metrics, p) == Some(per_kind as f64))
        })
        .await,
        "gauge per plugin:\n{}",
        get(addr, "/metrics").await
    );

    // `--plugin` lists only its own, also in the shared DLQ.
    let listed = cli(&[
        "dlq",
        "--config",
        cfg_path,
        "--plugin",
        "order-validator",
        "list",
    ]);
    assert_ok(&listed);
    let listed = text(&listed.stdout);
    assert_eq!(
        listed.matches(" order-validator ").count(),
        per_kind as usize,
        "{listed}"
    );
    assert!(!listed.contains("customer-totals "), "{listed}");
    assert!(
        listed.contains(&format!("{per_kind} dead letter(s) shown of {per_kind}")),
        "{listed}"
    );
    assert!(listed.contains("s ago"), "a time column: {listed}");

    // Replay flaky's: only flaky handles them again, fails again, and each is
    // dead-lettered again once, attempts counted from 1.
    let before_read = (
        entries_read(&mut conn, SHOP, "order-validator").await,
        entries_read(&mut conn, SHOP, "customer-totals").await,
    );
    let state_before: Option<Vec<u8>> = redis::cmd("GET")
        .arg("state:customer-totals:customer:c2")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert!(state_before.is_some(), "customer-totals counted c2");
    let first: BTreeSet<String> = dlq::range(&mut conn, flaky_dlq, "-", 1000)
        .await
        .expect("DLQ")
        .iter()
        .map(|d| d.meta(meta::SOURCE_ID).expect("source id").to_owned())
        .collect();
    let replayed = cli(&[
        "dlq", "--config", cfg_path, "--plugin", "flaky", "replay", "--all",
    ]);
    assert_ok(&replayed);
    assert!(
        text(&replayed.stdout).contains(&format!("replayed {per_kind} dead letter(s)")),
        "{}",
        text(&replayed.stdout)
    );
    let redeliver = "redeliver:events:shop:flaky";
    assert_eq!(
        text(&replayed.stdout)
            .matches(&format!(" -> {redeliver} "))
            .count(),
        per_kind as usize,
        "each new id printed"
    );
    assert!(
        wait_until(Duration::from_secs(30), || async {
            let mut c = conn.clone();
            xlen(&mut c, flaky_dlq).await == per_kind
                && pending(&mut c, redeliver, "flaky").await == 0
                && entries_read(&mut c, redeliver, "flaky").await == Some(per_kind)
        })
        .await,
        "replayed entries were not handled and dead-lettered again"
    );
    // A little longer: nothing replays the replays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        xlen(&mut conn, redeliver).await,
        per_kind,
        "each replayed once"
    );
    let again = dlq::range(&mut conn, flaky_dlq, "-", 1000)
        .await
        .expect("DLQ");
    assert_eq!(
        again.len() as u64,
        per_kind,
        "dead-lettered again, once each"
    );
    let second: BTreeSet<String> = again
        .iter()
        .map(|d| d.meta(meta::SOURCE_ID).expect("source id").to_owned())
        .collect();
    assert_eq!(second, first, "the original ids are kept");
    for d in &again {
        assert_eq!(d.meta(meta::ATTEMPTS), Some("2"), "attempts restart from 1");
        assert_eq!(d.meta(meta::SOURCE_STREAM), Some(SHOP));
        assert!(d.meta(meta::REDELIVERY_ID).is_some(), "{:?}", d.metadata);
    }
    // The other plugins saw nothing.
    assert_eq!(
        xlen(&mut conn, SHOP).await,
        N as u64,
        "nothing added to the source"
    );
    assert_eq!(
        (
            entries_read(&mut conn, SHOP, "order-validator").await,
            entries_read(&mut conn, SHOP, "customer-totals").await,
        ),
        before_read
    );
    let state_after: Option<Vec<u8>> = redis::cmd("GET")
        .arg("state:customer-totals:customer:c2")
        .query_async(&mut conn)
        .await
        .expect("GET");
    assert_eq!(
        state_after, state_before,
        "customer-totals' state unchanged"
    );
    assert_eq!(xlen(&mut conn, SHARED_DLQ).await, 2 * per_kind);

    // `--plugin` purges only its own.
    let purged = cli(&[
        "dlq",
        "--config",
        cfg_path,
        "--plugin",
        "customer-totals",
        "purge",
        "--yes",
    ]);
    assert_ok(&purged);
    assert!(text(&purged.stdout).contains(&format!("purged {per_kind} dead letter(s)")));
    let left = dlq::range(&mut conn, SHARED_DLQ, "-", 1000)
        .await
        .expect("DLQ");
    assert_eq!(left.len() as u64, per_kind);
    assert!(
        left.iter()
            .all(|d| d.meta(meta::PLUGIN) == Some("order-validator"))
    );

    shutdown.cancel();
    task.await.expect("host task").expect("host ran cleanly");
}

fn field(name: &[u8], value: &[u8]) -> RawField {
    RawField {
        name: name.to_vec(),
        value: value.to_vec(),
    }
}

async fn xadd_raw(conn: &mut MultiplexedConnection, stream: &str, fields: &[RawField]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream).arg("*");
    for f in fields {
        cmd.arg(&f.name[..]).arg(&f.value[..]);
    }
    cmd.query_async(conn).await.expect("XADD")
}

/// The original fields of every entry of a DLQ, by source id.
async fn dead_fields(
    conn: &mut MultiplexedConnection,
    dlq: &str,
) -> HashMap<String, Vec<RawField>> {
    raw_entries(conn, dlq)
        .await
        .into_iter()
        .map(|e| {
            let r = dlq::redeliver::decode(e.fields.unwrap_or_default());
            (r.source_id.expect("source id"), r.fields)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_and_non_utf8_entries_go_through_dlq_and_replay_byte_for_byte() {
    let redis = start_redis();
    let stream = "events:odd";
    let dlq_stream = "dlq:events:odd:recorder";
    // 100,000 fields: far past what Lua's unpack takes in one call.
    let mut conn = connect_unbounded(&redis.url()).await;
    let mut huge: Vec<RawField> = (0..100_000)
        .map(|i| field(format!("f{i}").as_bytes(), &[i as u8, 0, 255]))
        .collect();
    huge.push(field(b"reject", b"1"));
    let binary = vec![
        field(b"k\xff", b"1"),
        field(b"k\xfe", b"2"),
        field(b"\xff\xfename", b"\x00\x1b"),
    ];
    let huge_id = xadd_raw(&mut conn, stream, &huge).await;
    let binary_id = xadd_raw(&mut conn, stream, &binary).await;
    let host = InProcessHost::start(config(
        &redis.url(),
        vec![plugin("recorder", artifacts::RECORDER, stream)],
    ))
    .await;
    let m = host.metrics("recorder", stream);
    assert!(
        wait_until(Duration::from_secs(60), || async {
            xlen(&mut conn.clone(), dlq_stream).await == 2
        })
        .await,
        "not dead-lettered"
    );
    assert_eq!(m.rejected.get(), 1, "only the huge one reached the handler");
    let dead = dead_fields(&mut conn, dlq_stream).await;
    assert_eq!(dead[&huge_id], huge, "100,000 fields byte for byte");
    assert_eq!(
        dead[&binary_id], binary,
        "non-UTF-8 names kept, k\\xff and k\\xfe distinct"
    );
    let letters = dlq::range(&mut conn, dlq_stream, "-", 10)
        .await
        .expect("DLQ");
    let binary_letter = letters
        .iter()
        .find(|d| d.meta(meta::SOURCE_ID) == Some(binary_id.as_str()))
        .expect("binary dead letter");
    assert_eq!(
        binary_letter.meta(meta::REASON),
        Some("undeliverable:field-name-not-utf8")
    );
    assert!(
        binary_letter
            .meta(meta::ERROR)
            .is_some_and(|e| e.contains("k\\xff") && e.contains("not UTF-8")),
        "{:?}",
        binary_letter.meta(meta::ERROR)
    );
    let shown = cli(&[
        "dlq",
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "show",
        &binary_letter.id,
    ]);
    assert_ok(&shown);
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("field k\\xff: 1") && shown.contains("field k\\xfe: 2"),
        "{shown}"
    );

    // Replay both (the host still runs): they come back byte for byte and
    // are refused again the same way, each once.
    let out = cli(&[
        "dlq",
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "replay",
        "--all",
    ]);
    assert_ok(&out);
    assert!(
        text(&out.stdout).contains("replayed 2 dead letter(s)"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        wait_until(Duration::from_secs(60), || async {
            let mut c = conn.clone();
            xlen(&mut c, dlq_stream).await == 2
                && pending(&mut c, "redeliver:events:odd:recorder", "recorder").await == 0
                && m.rejected.get() == 2
        })
        .await,
        "replays not dead-lettered again (rejected {}, DLQ {}, redelivery {} pending {} read {:?}, received {})",
        m.rejected.get(),
        xlen(&mut conn, dlq_stream).await,
        xlen(&mut conn, "redeliver:events:odd:recorder").await,
        pending(&mut conn, "redeliver:events:odd:recorder", "recorder").await,
        entries_read(&mut conn, "redeliver:events:odd:recorder", "recorder").await,
        host.metrics("recorder", "redeliver:events:odd:recorder")
            .received
            .get(),
    );
    host.stop().await;
    let dead = dead_fields(&mut conn, dlq_stream).await;
    assert_eq!(
        dead[&huge_id], huge,
        "100,000 fields byte for byte after a replay"
    );
    assert_eq!(
        dead[&binary_id], binary,
        "non-UTF-8 names byte for byte after a replay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_show_and_list_neutralise_control_bytes() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:hostile-names";
    let dlq_stream = "dlq:events:hostile-names:recorder";
    let fields = vec![
        field(b"x\ndlq.reason: forged-by-producer", b"\x1b[31mred\x07"),
        field(b"reject", b"\x1b]0;title\x07"),
    ];
    xadd_raw(&mut conn, stream, &fields).await;
    let host = InProcessHost::start(config(
        &redis.url(),
        vec![plugin("recorder", artifacts::RECORDER, stream)],
    ))
    .await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            xlen(&mut conn.clone(), dlq_stream).await == 1
        })
        .await
    );
    host.stop().await;
    let d = &dlq::range(&mut conn, dlq_stream, "-", 1)
        .await
        .expect("DLQ")[0];
    let shown = cli(&[
        "dlq",
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "show",
        &d.id,
    ]);
    assert_ok(&shown);
    let listed = cli(&[
        "dlq",
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "list",
        "--text",
        "red",
    ]);
    assert_ok(&listed);
    let json = cli(&[
        "dlq",
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "list",
        "--json",
    ]);
    assert_ok(&json);
    for out in [&shown, &listed, &json] {
        assert!(
            !out.stdout.iter().any(|&b| b == 0x1b || b == 0x07),
            "raw control bytes reach the terminal:\n{}",
            text(&out.stdout)
        );
    }
    let shown = text(&shown.stdout);
    assert!(
        !shown.lines().any(|l| l.starts_with("dlq.reason: forged")),
        "a field name forged a metadata line:\n{shown}"
    );
    assert!(
        shown.contains("field x\\ndlq.reason: forged-by-producer: \\x1b[31mred\\x07"),
        "{shown}"
    );
    assert!(shown.contains("dlq.reason: rejected"), "{shown}");
    assert!(
        shown.contains("time: ") && shown.contains(" ago)"),
        "a human time: {shown}"
    );
    assert!(
        text(&listed.stdout).contains("1 dead letter(s) shown of 1"),
        "{}",
        text(&listed.stdout)
    );
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(doc["total"], 1);
    assert_eq!(doc["more"], false);
    assert_eq!(doc["letters"][0]["reason"], "rejected");
}

/// A connection without the default 500 ms response timeout, for big entries.
async fn connect_unbounded(url: &str) -> MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect")
}

/// Puts `n` dead letters of plugin `p` into `dlq` the way the host does.
async fn seed_dead_letters(
    conn: &mut MultiplexedConnection,
    stream: &str,
    dlq: &str,
    n: usize,
    value_bytes: usize,
) -> Vec<String> {
    let _: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg("p")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    let ids = produce(conn, stream, n, |i| {
        vec![
            ("n".to_owned(), i.to_string().into_bytes()),
            ("v".to_owned(), vec![b'x'; value_bytes]),
        ]
    })
    .await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("p")
        .arg("c")
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(conn)
        .await
        .expect("read");
    for id in &ids {
        let fields = vec![
            (b"n".to_vec(), b"x".to_vec()),
            (b"v".to_vec(), vec![b'x'; value_bytes]),
        ];
        let letter = dlq::Letter {
            pending_stream: stream,
            pending_id: id,
            group: "p",
            consumer: "c",
            dlq,
            source_stream: stream,
            source_id: id,
            plugin: "p",
            digest: "sha256:0",
            reason: "rejected",
            error: "test",
            attempts: 1,
            fields: &fields,
            origin: &[],
        };
        let written = dlq::dead_letter(conn, &letter).await.expect("dead-letter");
        assert!(matches!(written, dlq::Written::Moved(_)), "{written:?}");
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_replay_of_a_big_entry_is_never_reported_as_failed() {
    let redis = start_redis();
    let (stream, dlq_stream) = ("events:big", "dlq:events:big:p");
    let mut conn = connect_unbounded(&redis.url()).await;
    seed_dead_letters(&mut conn, stream, dlq_stream, 1, 40 << 20).await;
    let id = dlq::range(&mut conn, dlq_stream, "-", 1)
        .await
        .expect("DLQ")[0]
        .id
        .clone();
    // A budget far too short for 40 MiB: the reply cannot come in time.
    let out = cli(&[
        "dlq",
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "replay",
        "--id",
        &id,
        "--timeout",
        "1ms",
    ]);
    let stdout = text(&out.stdout);
    assert_ne!(
        out.status.code(),
        Some(1),
        "reported as failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("error"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(xlen(&mut conn, dlq_stream).await, 0, "it was moved");
    assert_eq!(xlen(&mut conn, "redeliver:events:big:p").await, 1);
    assert!(
        stdout.contains(&format!("{id} -> redeliver:events:big:p ")) && out.status.success(),
        "a move confirmed after the timeout is reported as moved:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_killed_with_sigkill_loses_and_duplicates_nothing() {
    const N: usize = 3_000;
    let redis = start_redis();
    let (stream, dlq_stream, redeliver) = (
        "events:killed",
        "dlq:events:killed:p",
        "redeliver:events:killed:p",
    );
    let mut conn = connect_unbounded(&redis.url()).await;
    let ids: BTreeSet<String> = seed_dead_letters(&mut conn, stream, dlq_stream, N, 2_000)
        .await
        .into_iter()
        .collect();
    let mut child = Command::new(streamhost_bin())
        .args([
            "dlq",
            "--redis",
            &redis.url(),
            "--stream",
            dlq_stream,
            "replay",
            "--all",
        ])
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn replay");
    assert!(
        wait_until(Duration::from_secs(30), || async {
            xlen(&mut conn.clone(), redeliver).await >= 200
        })
        .await,
        "replay made no progress"
    );
    let _ = child.kill();
    let _ = child.wait();
    let moved = xlen(&mut conn, redeliver).await;
    assert!(moved < N as u64, "killed before the end ({moved} moved)");
    let source_ids = |entries: Vec<entry::Entry>| -> Vec<String> {
        entries
            .into_iter()
            .map(|e| {
                dlq::redeliver::decode(e.fields.unwrap_or_default())
                    .source_id
                    .expect("source id")
            })
            .collect()
    };
    let in_dlq = source_ids(raw_entries(&mut conn, dlq_stream).await);
    let in_redeliver = source_ids(raw_entries(&mut conn, redeliver).await);
    let (dlq_set, redeliver_set): (BTreeSet<_>, BTreeSet<_>) = (
        in_dlq.iter().cloned().collect(),
        in_redeliver.iter().cloned().collect(),
    );
    assert_eq!(dlq_set.len(), in_dlq.len(), "no duplicate in the DLQ");
    assert_eq!(
        redeliver_set.len(),
        in_redeliver.len(),
        "no duplicate replay"
    );
    assert!(
        dlq_set.is_disjoint(&redeliver_set),
        "an entry in both places"
    );
    let all: BTreeSet<String> = dlq_set.union(&redeliver_set).cloned().collect();
    assert_eq!(all, ids, "nothing lost");
    // Running it again finishes the job, each entry once.
    let out = cli(&[
        "dlq",
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "replay",
        "--all",
    ]);
    assert_ok(&out);
    let in_redeliver = source_ids(raw_entries(&mut conn, redeliver).await);
    assert_eq!(in_redeliver.len(), N);
    assert_eq!(in_redeliver.into_iter().collect::<BTreeSet<_>>(), ids);
    assert_eq!(xlen(&mut conn, dlq_stream).await, 0);
}
