//! The dead-letter stream through the real `streamhost dlq` command line:
//! rejected entries land there at once, and `list`, `show`, `replay` (by id,
//! by reason, all, with progress) and `purge` work on what the host put there.

use std::process::{Command, Output};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use streamhost::dlq::{self, meta};
use streamhost::entry;
use streamhost_tests::*;

type Fields = Vec<(String, Vec<u8>)>;

/// Runs `streamhost-e2e dlq <args>`, never against a server from the environment.
fn dlq_cli(args: &[&str]) -> Output {
    Command::new(streamhost_bin())
        .arg("dlq")
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost dlq")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// Every entry of a stream as `(id, fields)`, values byte for byte.
async fn entries(conn: &mut MultiplexedConnection, stream: &str) -> Vec<(String, Fields)> {
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    let redis::Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .into_iter()
        .map(|item| {
            let e = entry::parse_entry(item, 1).expect("entry");
            let fields = e
                .fields
                .unwrap_or_default()
                .into_iter()
                .map(|f| (String::from_utf8(f.name).expect("UTF-8 name"), f.value))
                .collect();
            (e.id, fields)
        })
        .collect()
}

/// Every entry of a redelivery stream, decoded into origin and original fields.
async fn redelivered(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> Vec<(String, dlq::redeliver::Redelivered)> {
    let reply: redis::Value = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    let redis::Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .into_iter()
        .map(|item| {
            let e = entry::parse_entry(item, 1).expect("entry");
            (e.id, dlq::redeliver::decode(e.fields.unwrap_or_default()))
        })
        .collect()
}

/// String-named fields as raw entry fields.
fn raw_fields(fields: &[(String, Vec<u8>)]) -> Vec<entry::RawField> {
    fields
        .iter()
        .map(|(n, v)| entry::RawField {
            name: n.as_bytes().to_vec(),
            value: v.clone(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_entry_is_dead_lettered_at_once_and_replay_round_trips_byte_for_byte() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let (stream, dlq_stream) = ("events:orders", "dlq:events:orders:order-validator");
    let redeliver = "redeliver:events:orders:order-validator";
    let original: Fields = vec![
        ("data".to_owned(), b"not json \x00\xff".to_vec()),
        ("bin".to_owned(), vec![0, 255, 1, 2, 13, 10]),
        (
            "msg.data".to_owned(),
            b"a user field named like the prefix".to_vec(),
        ),
        ("empty".to_owned(), Vec::new()),
    ];
    let source_id = produce(&mut conn, stream, 1, |_| original.clone())
        .await
        .remove(0);
    let host = InProcessHost::start(config(
        &redis.url(),
        vec![plugin(
            "order-validator",
            artifacts::ORDER_VALIDATOR,
            stream,
        )],
    ))
    .await;
    let m = host.metrics("order-validator", stream);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            m.dead_lettered.get() >= 1
        })
        .await,
        "never dead-lettered"
    );
    host.stop().await;
    assert_eq!(
        m.received.get(),
        1,
        "rejected on the first attempt, not retried"
    );
    assert_eq!(m.retried.get(), 0);
    assert_eq!(pending(&mut conn, stream, "order-validator").await, 0);
    let letters = dlq::range(&mut conn, dlq_stream, "-", 10)
        .await
        .expect("DLQ");
    assert_eq!(letters.len(), 1);
    let d = &letters[0];
    assert_eq!(d.meta(meta::REASON), Some("rejected"));
    assert_eq!(d.meta(meta::ATTEMPTS), Some("1"));
    assert_eq!(d.meta(meta::SOURCE_ID), Some(source_id.as_str()));
    assert!(
        d.meta(meta::ERROR).is_some_and(|e| e.contains("not JSON")),
        "{:?}",
        d.meta(meta::ERROR)
    );
    assert_eq!(d.fields, raw(&original));

    let out = dlq_cli(&[
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "replay",
        "--id",
        &d.id,
    ]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("replayed 1 dead letter(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(xlen(&mut conn, dlq_stream).await, 0, "removed from the DLQ");
    let source = entries(&mut conn, stream).await;
    assert_eq!(
        source,
        vec![(source_id.clone(), original.clone())],
        "nothing added to the source stream other groups read"
    );
    let replayed = redelivered(&mut conn, redeliver).await;
    assert_eq!(replayed.len(), 1);
    assert!(
        stdout(&out).contains(&format!("{} -> {redeliver} {}", d.id, replayed[0].0)),
        "prints the new id: {}",
        stdout(&out)
    );
    let (_, r) = &replayed[0];
    assert_eq!(r.source_id.as_deref(), Some(source_id.as_str()));
    assert_eq!(r.source_stream.as_deref(), Some(stream));
    assert_eq!(
        r.fields,
        raw_fields(&original),
        "replayed byte for byte, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_list_show_replay_by_reason_and_purge() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let (stream, dlq_stream) = ("events:mixed", "dlq:events:mixed:recorder");
    let redeliver = "redeliver:events:mixed:recorder";
    let mut p = plugin("recorder", artifacts::RECORDER, stream);
    p.retry.max_attempts = 2;
    let cfg = config(&redis.url(), vec![p]);
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg_path = dir.path().join("streamhost.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).expect("config")).expect("write config");
    let cfg_path = cfg_path.to_str().expect("utf-8 path");
    let ids = produce(&mut conn, stream, 10, |i| match i % 5 {
        0 | 1 => vec![("fail_times".to_owned(), b"9".to_vec())],
        2 | 3 => vec![("reject".to_owned(), b"1".to_vec())],
        _ => vec![("n".to_owned(), i.to_string().into_bytes())],
    })
    .await;
    let host = InProcessHost::start(cfg.clone()).await;
    let m = host.metrics("recorder", stream);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            m.dead_lettered.get() >= 8 && m.acked.get() >= 2
        })
        .await,
        "dead-lettered {}, acked {}",
        m.dead_lettered.get(),
        m.acked.get()
    );
    host.stop().await;

    // list, through the config file
    let out = dlq_cli(&["--config", cfg_path, "list"]);
    assert_ok(&out);
    let listed = stdout(&out);
    assert_eq!(listed.matches("rejected").count(), 4, "{listed}");
    assert_eq!(listed.matches("attempts-exhausted").count(), 4, "{listed}");
    assert!(listed.contains("8 dead letter(s) shown"), "{listed}");
    assert!(listed.contains(&format!("{stream}/{}", ids[0])), "{listed}");

    // show
    let letters = dlq::range(&mut conn, dlq_stream, "-", 100)
        .await
        .expect("DLQ");
    let exhausted = letters
        .iter()
        .find(|d| d.meta(meta::REASON) == Some("attempts-exhausted"))
        .expect("an exhausted one");
    let out = dlq_cli(&[
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "show",
        &exhausted.id,
    ]);
    assert_ok(&out);
    let shown = stdout(&out);
    for want in [
        format!("id: {}", exhausted.id),
        "dlq.reason: attempts-exhausted".to_owned(),
        "dlq.attempts: 2".to_owned(),
        "dlq.plugin: recorder".to_owned(),
        "field fail_times: 9".to_owned(),
    ] {
        assert!(shown.contains(&want), "{want:?} missing from:\n{shown}");
    }
    let out = dlq_cli(&["--config", cfg_path, "show", "0-1"]);
    assert_eq!(out.status.code(), Some(2), "an unknown id is bad input");
    assert!(
        stderr(&out).contains("no dead letter 0-1"),
        "{}",
        stderr(&out)
    );

    // replay needs a selection
    let out = dlq_cli(&["--config", cfg_path, "replay"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--all"), "{}", stderr(&out));

    // replay of an id that is not there replays nothing
    let out = dlq_cli(&[
        "--config",
        cfg_path,
        "replay",
        "--id",
        &exhausted.id,
        "--id",
        "0-1",
    ]);
    // A dead letter that does not exist is bad input (issue 14: exit 2).
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no dead letter 0-1"),
        "{}",
        stderr(&out)
    );
    assert_eq!(xlen(&mut conn, dlq_stream).await, 8);

    // replay by reason
    let before = xlen(&mut conn, stream).await;
    let dry = dlq_cli(&[
        "--config",
        cfg_path,
        "replay",
        "--reason",
        "attempts-exhausted",
        "--dry-run",
    ]);
    assert_ok(&dry);
    assert!(
        stdout(&dry).contains("would replay 4 dead letter(s)")
            && stdout(&dry)
                .matches(&format!("would go to {redeliver}"))
                .count()
                == 4,
        "{}",
        stdout(&dry)
    );
    assert_eq!(
        xlen(&mut conn, dlq_stream).await,
        8,
        "a dry run changes nothing"
    );
    let bad = dlq_cli(&["--config", cfg_path, "replay", "--reason", "rejectd"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("reasons present: attempts-exhausted (4), rejected (4)"),
        "{}",
        stderr(&bad)
    );
    let out = dlq_cli(&[
        "--config",
        cfg_path,
        "replay",
        "--reason",
        "attempts-exhausted",
    ]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("replayed 4 dead letter(s)"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("4 not selected"), "{}", stdout(&out));
    assert_eq!(
        xlen(&mut conn, stream).await,
        before,
        "not to the source stream"
    );
    assert_eq!(
        xlen(&mut conn, redeliver).await,
        4,
        "to the plugin's redelivery stream"
    );
    let left = dlq::range(&mut conn, dlq_stream, "-", 100)
        .await
        .expect("DLQ");
    assert_eq!(left.len(), 4);
    assert!(
        left.iter()
            .all(|d| d.meta(meta::REASON) == Some("rejected"))
    );
    let replayed = redelivered(&mut conn, redeliver).await;
    assert!(
        replayed
            .iter()
            .all(|(_, r)| r.fields == raw_fields(&[("fail_times".to_owned(), b"9".to_vec())])),
        "{replayed:?}"
    );

    // purge needs --yes
    let out = dlq_cli(&["--config", cfg_path, "purge"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(xlen(&mut conn, dlq_stream).await, 4);
    let out = dlq_cli(&["--config", cfg_path, "purge", "--yes"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("purged 4 dead letter(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(xlen(&mut conn, dlq_stream).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_replay_shows_progress_and_puts_every_entry_back() {
    const N: usize = 1_200;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let (stream, dlq_stream) = ("events:many", "dlq:events:many:recorder");
    let fields = |i: usize| -> Fields {
        vec![
            ("n".to_owned(), i.to_string().into_bytes()),
            ("reject".to_owned(), vec![i as u8, 0, 255]),
        ]
    };
    produce(&mut conn, stream, N, fields).await;
    let host = InProcessHost::start(config(
        &redis.url(),
        vec![plugin("recorder", artifacts::RECORDER, stream)],
    ))
    .await;
    let m = host.metrics("recorder", stream);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            m.dead_lettered.get() >= N as u64
        })
        .await,
        "dead-lettered {}",
        m.dead_lettered.get()
    );
    host.stop().await;

    let out = dlq_cli(&[
        "--redis",
        &redis.url(),
        "--stream",
        dlq_stream,
        "replay",
        "--all",
    ]);
    assert_ok(&out);
    let progress = stderr(&out);
    for step in ["replayed 500", "replayed 1000", "replayed 1200"] {
        assert!(
            progress.contains(step),
            "{step:?} missing from progress:\n{progress}"
        );
    }
    assert_eq!(xlen(&mut conn, dlq_stream).await, 0);
    let mut back: Vec<Fields> = redelivered(&mut conn, "redeliver:events:many:recorder")
        .await
        .into_iter()
        .map(|(_, r)| {
            r.fields
                .into_iter()
                .map(|f| (String::from_utf8(f.name).expect("UTF-8 name"), f.value))
                .collect()
        })
        .collect();
    back.sort_by_key(|f| {
        String::from_utf8_lossy(&f[0].1)
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    assert_eq!(back, (0..N).map(fields).collect::<Vec<_>>());
}
