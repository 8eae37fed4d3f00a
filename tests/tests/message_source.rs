//! WIT `streamhost:plugin@0.2.0` on a real redis-server with real host
//! processes: a 0.2 component (`source-probe`) reads where each message came
//! from on all four sources; its `push` and `zadd` effects commit with the
//! ack and never on a failed attempt; `dlq replay` brings a list, sorted-set
//! or Pub/Sub dead letter back to the failing plugin alone, with its origin
//! and bytes, at attempt 1; a component built against 0.1.0 (`legacy-v01`)
//! still runs.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use streamhost::config::{PluginConfig, SortedSetOrder};
use streamhost_tests::ledger::{self, strip_ansi};
use streamhost_tests::*;

const STREAM: &str = "ev:orders";
const LIST: &str = "jobs:q";
const ZSET: &str = "jobs:z";
const PATTERN: &str = "bus:*";
/// A channel that is not UTF-8, matched by [`PATTERN`].
const CHANNEL: &[u8] = b"bus:\xffa";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `source-probe` plugin; `source` sets its source key.
fn probe(name: &str, source: impl FnOnce(&mut PluginConfig)) -> PluginConfig {
    let mut p = plugin(name, artifacts::SOURCE_PROBE, "");
    p.stream.clear();
    source(&mut p);
    p.retry.max_attempts = 5;
    p.allow.push = vec![format!("out:{name}:list")];
    p.allow.zadd = vec![format!("out:{name}:zset")];
    p
}

fn four_probes() -> Vec<PluginConfig> {
    vec![
        probe("p-stream", |p| p.stream = STREAM.to_owned()),
        probe("p-list", |p| p.list = Some(LIST.to_owned())),
        probe("p-zset", |p| {
            p.sorted_set = Some(ZSET.to_owned());
            p.order = Some(SortedSetOrder::Priority);
        }),
        probe("p-pubsub", |p| p.subscribe = Some(vec![PATTERN.to_owned()])),
    ]
}

/// The `source-probe` lines of a log whose data is `data`.
fn probe_lines(log: &str, data: &[u8]) -> Vec<String> {
    let needle = format!(" data={}", hex(data));
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains("source-probe id=") && l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

fn word<'l>(line: &'l str, name: &str) -> Option<&'l str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

async fn cmd<T: redis::FromRedisValue>(conn: &mut MultiplexedConnection, c: &mut redis::Cmd) -> T {
    c.query_async(conn).await.expect("redis command")
}

async fn publish_when_subscribed(conn: &mut MultiplexedConnection, payloads: &[&[u8]]) {
    let ready = wait_until(Duration::from_secs(20), || {
        let mut conn = conn.clone();
        async move {
            let n: i64 = cmd(&mut conn, redis::cmd("PUBSUB").arg("NUMPAT")).await;
            n >= 1
        }
    })
    .await;
    assert!(ready, "the Pub/Sub plugin never subscribed");
    for p in payloads {
        let _: i64 = cmd(conn, redis::cmd("PUBLISH").arg(CHANNEL).arg(*p)).await;
    }
}

/// Puts `payloads` on every source: the stream as field `data`, the list by
/// `LPUSH`, the sorted set with scores 1.5, 2.5, ..., Pub/Sub on [`CHANNEL`].
/// Returns the stream entry ids.
async fn produce_everywhere(conn: &mut MultiplexedConnection, payloads: &[&[u8]]) -> Vec<String> {
    let mut ids = Vec::new();
    for p in payloads {
        ids.push(
            cmd(
                conn,
                redis::cmd("XADD").arg(STREAM).arg("*").arg("data").arg(*p),
            )
            .await,
        );
        let _: i64 = cmd(conn, redis::cmd("LPUSH").arg(LIST).arg(*p)).await;
    }
    for (i, p) in payloads.iter().enumerate() {
        let _: i64 = cmd(
            conn,
            redis::cmd("ZADD").arg(ZSET).arg(i as f64 + 1.5).arg(*p),
        )
        .await;
    }
    publish_when_subscribed(conn, payloads).await;
    ids
}

async fn list(conn: &mut MultiplexedConnection, key: &str) -> Vec<Vec<u8>> {
    cmd(conn, redis::cmd("LRANGE").arg(key).arg(0).arg(-1)).await
}

async fn zset(conn: &mut MultiplexedConnection, key: &str) -> Vec<(Vec<u8>, f64)> {
    cmd(
        conn,
        redis::cmd("ZRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_component_reads_its_source_and_push_and_zadd_commit_with_the_ack_only() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let names = ["p-stream", "p-list", "p-zset", "p-pubsub"];
    // Retried twice before the ok: its effects must happen once, after the third attempt.
    let ok: &[u8] = b"ok \xff\x00 fail_times=2 score=7";
    // Effects asked for, then rejected: they must never happen.
    let rejected: &[u8] = b"rej \xfe reject score=9";
    let payload = |name: &str, base: &[u8]| {
        let mut p = base.to_vec();
        p.extend_from_slice(format!(" push=out:{name}:list zadd=out:{name}:zset").as_bytes());
        p
    };
    // Each plugin's payloads name its own output keys (its allow lists).
    let mut host = HostProcess::spawn(dir.path(), "host", &config(&redis.url(), four_probes()));
    let mut stream_ids = Vec::new();
    for name in &names {
        let ok = payload(name, ok);
        let rejected = payload(name, rejected);
        let both: [&[u8]; 2] = [&ok, &rejected];
        match *name {
            "p-stream" => {
                for p in both {
                    let id: String = cmd(
                        &mut conn,
                        redis::cmd("XADD").arg(STREAM).arg("*").arg("data").arg(p),
                    )
                    .await;
                    stream_ids.push(id);
                }
            }
            "p-list" => {
                for p in both {
                    let _: i64 = cmd(&mut conn, redis::cmd("LPUSH").arg(LIST).arg(p)).await;
                }
            }
            "p-zset" => {
                for (i, p) in both.iter().enumerate() {
                    let _: i64 = cmd(
                        &mut conn,
                        redis::cmd("ZADD").arg(ZSET).arg(i as f64 + 1.5).arg(*p),
                    )
                    .await;
                }
            }
            _ => publish_when_subscribed(&mut conn, &both).await,
        }
    }
    let done = wait_until(Duration::from_secs(30), || {
        let mut conn = conn.clone();
        async move {
            for name in names {
                let dlq = ledger::stream_fields(&mut conn, &dlq_of(name)).await;
                if dlq.len() != 1
                    || list(&mut conn, &format!("out:{name}:list"))
                        .await
                        .is_empty()
                {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert!(
        done,
        "not every plugin handled both messages:\n{}",
        host.log_tail()
    );
    // Settled: nothing more may arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = host.log();
    for name in names {
        let (ok, rejected) = (payload(name, ok), payload(name, rejected));
        // Effects: once, with the ack of the third attempt; none of the rejected message's.
        assert_eq!(
            list(&mut conn, &format!("out:{name}:list")).await,
            vec![ok.clone()],
            "{name}: push"
        );
        assert_eq!(
            zset(&mut conn, &format!("out:{name}:zset")).await,
            vec![(ok.clone(), 7.0)],
            "{name}: zadd"
        );
        let ok_lines = probe_lines(&log, &ok);
        let attempts: Vec<&str> = ok_lines.iter().filter_map(|l| word(l, "attempt")).collect();
        assert_eq!(attempts, ["1", "2", "3"], "{name}: {ok_lines:#?}");
        assert_eq!(
            probe_lines(&log, &rejected).len(),
            1,
            "{name}: rejected once"
        );
        // The source, as the handler saw it.
        let line = &ok_lines[0];
        match name {
            "p-stream" => {
                assert!(
                    line.contains(&format!(" stream name={STREAM} entry={} ", stream_ids[0])),
                    "{line}"
                );
                assert_eq!(word(line, "id"), Some(stream_ids[0].as_str()), "{line}");
            }
            "p-list" => assert!(line.contains(&format!(" list key={LIST} ")), "{line}"),
            "p-zset" => assert!(
                line.contains(&format!(" sorted-set key={ZSET} score=1.5 ")),
                "{line}"
            ),
            _ => assert!(
                line.contains(&format!(
                    " pubsub channel={} pattern={PATTERN} ",
                    hex(CHANNEL)
                )),
                "{line}"
            ),
        }
        let dlq = &ledger::stream_fields(&mut conn, &dlq_of(name)).await[0];
        assert_eq!(
            ledger::field(dlq, "msg.data"),
            Some(rejected),
            "{name}: dead letter byte for byte"
        );
    }
    terminate(&mut host);
}

fn dlq_of(plugin: &str) -> String {
    let key = match plugin {
        "p-stream" => STREAM,
        "p-list" => LIST,
        "p-zset" => ZSET,
        _ => PATTERN,
    };
    format!("dlq:{key}:{plugin}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_brings_list_sorted_set_and_pubsub_letters_back_to_their_plugin_alone() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let mut plugins: Vec<PluginConfig> = four_probes().into_iter().skip(1).collect();
    // Also subscribed: it gets every Pub/Sub message once, and no replay.
    let mut bystander = plugin("bystander", artifacts::RECORDER, "");
    bystander.stream.clear();
    bystander.subscribe = Some(vec![PATTERN.to_owned()]);
    plugins.push(bystander);
    let cfg = config(&redis.url(), plugins);
    let cfg_path = dir.path().join("replay.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).expect("serializes")).expect("write config");
    let names = ["p-list", "p-zset", "p-pubsub"];
    for name in names {
        let () = cmd(
            &mut conn,
            redis::cmd("SET").arg(format!("state:{name}:flag")).arg("1"),
        )
        .await;
    }
    let mut host = HostProcess::spawn(dir.path(), "host", &cfg);
    let kept: &[u8] = b"kept";
    let failing: [&[u8]; 2] = [b"f1 reject-if-flag \xff\x00\r\n", b"f2 reject-if-flag \x80"];
    produce_everywhere(&mut conn, &[kept, failing[0], failing[1]]).await;
    let dead = wait_until(Duration::from_secs(30), || {
        let mut conn = conn.clone();
        async move {
            for name in names {
                if ledger::stream_fields(&mut conn, &dlq_of(name)).await.len() != 2 {
                    return false;
                }
            }
            true
        }
    })
    .await;
    assert!(
        dead,
        "the failing messages were not dead-lettered:\n{}",
        host.log_tail()
    );
    for name in names {
        let () = cmd(
            &mut conn,
            redis::cmd("DEL").arg(format!("state:{name}:flag")),
        )
        .await;
    }
    for name in names {
        let out = std::process::Command::new(streamhost_bin())
            .args(["dlq", "--config"])
            .arg(&cfg_path)
            .args(["--plugin", name, "replay", "--all"])
            .env_remove("REDIS_URL")
            .output()
            .expect("run streamhost dlq replay");
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let handled = wait_until(Duration::from_secs(30), || async {
        let log = host.log();
        names.iter().all(|name| {
            failing.iter().all(|f| {
                probe_lines(&log, f).iter().any(|l| {
                    l.contains(&format!("plugin=\"{name}\""))
                        && word(l, "id").is_some_and(|id| id.contains('-'))
                })
            })
        })
    })
    .await;
    assert!(
        handled,
        "replayed letters not handled:\n{}",
        host.log_tail()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = host.log();
    for name in names {
        assert!(
            ledger::stream_fields(&mut conn, &dlq_of(name))
                .await
                .is_empty(),
            "{name}: handled, not dead-lettered again"
        );
        for f in failing {
            let lines: Vec<String> = probe_lines(&log, f)
                .into_iter()
                .filter(|l| l.contains(&format!("plugin=\"{name}\"")))
                .collect();
            // The first delivery, then the replay: at attempt 1, with its
            // id in the redelivery stream and the same origin and bytes.
            assert_eq!(lines.len(), 2, "{name}: {lines:#?}");
            let (first, replayed) = (&lines[0], &lines[1]);
            assert_eq!(word(replayed, "attempt"), Some("1"), "{replayed}");
            assert!(
                word(replayed, "id").is_some_and(|id| id.contains('-')),
                "{replayed}"
            );
            // What follows `attempt=N` up to the data: the source.
            let origin = |l: &str| {
                let from = l.find(" attempt=").expect("attempt") + 1;
                let upto = l[from..].split(" data=").next().unwrap_or_default();
                upto.split_once(' ').map(|(_, source)| source.to_owned())
            };
            assert_eq!(
                origin(first),
                origin(replayed),
                "{name}: same origin\n{first}\n{replayed}"
            );
        }
    }
    // The sorted-set member kept its score, the Pub/Sub message its channel and pattern.
    assert!(
        probe_lines(&log, failing[0])
            .iter()
            .any(|l| l.contains("sorted-set key=jobs:z score=2.5"))
    );
    assert!(
        probe_lines(&log, failing[1])
            .iter()
            .any(|l| l.contains(&format!(
                "pubsub channel={} pattern={PATTERN}",
                hex(CHANNEL)
            )))
    );
    // Nothing went back where other consumers read: the queues are empty,
    // and the bystander saw each Pub/Sub message once.
    assert_eq!(list(&mut conn, LIST).await, Vec::<Vec<u8>>::new());
    assert_eq!(zset(&mut conn, ZSET).await, Vec::new());
    let bystander = ledger::recorder_handled(&log);
    assert_eq!(
        bystander.len(),
        3,
        "bystander: the three published messages only"
    );
    terminate(&mut host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_component_still_runs_on_a_stream_and_sees_the_key_elsewhere() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let mut on_stream = plugin("legacy", artifacts::LEGACY_V01, "legacy:s");
    on_stream.allow.emit = vec!["legacy:out".to_owned()];
    let mut on_list = plugin("legacy-list", artifacts::LEGACY_V01, "");
    on_list.stream.clear();
    on_list.list = Some("legacy:q".to_owned());
    let cfg = config(&redis.url(), vec![on_stream, on_list]);
    // `check` says what a 0.1 guest sees on a list.
    let cfg_path = dir.path().join("legacy.toml");
    std::fs::write(&cfg_path, toml::to_string(&cfg).expect("serializes")).expect("write config");
    let out = std::process::Command::new(streamhost_bin())
        .args(["check", "--config"])
        .arg(&cfg_path)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("note: plugin \"legacy-list\" is built against streamhost:plugin@0.1.0"),
        "{stdout}"
    );
    assert!(!stdout.contains("note: plugin \"legacy\" "), "{stdout}");

    let mut host = HostProcess::spawn(dir.path(), "host", &cfg);
    let id: String = cmd(
        &mut conn,
        redis::cmd("XADD")
            .arg("legacy:s")
            .arg("*")
            .arg("data")
            .arg("hello")
            .arg("emit")
            .arg("legacy:out"),
    )
    .await;
    let _: i64 = cmd(&mut conn, redis::cmd("LPUSH").arg("legacy:q").arg("item-1")).await;
    let ran = ledger::wait_for_log(
        &host,
        &format!("legacy-v01 legacy:s {id} attempt 1 data hello"),
        Duration::from_secs(20),
    )
    .await
        && ledger::wait_for_log(&host, "legacy-v01 legacy:q ", Duration::from_secs(20)).await;
    assert!(ran, "{}", host.log_tail());
    assert!(
        strip_ansi(&host.log()).contains("attempt 1 data item-1"),
        "{}",
        host.log_tail()
    );
    let emitted = wait_until(Duration::from_secs(10), || {
        let mut conn = conn.clone();
        async move { ledger::stream_fields(&mut conn, "legacy:out").await.len() == 1 }
    })
    .await;
    assert!(emitted, "the 0.1 emit effect was not committed");
    let out = &ledger::stream_fields(&mut conn, "legacy:out").await[0];
    assert_eq!(ledger::field(out, "from"), Some(id.into_bytes()));
    assert_eq!(pending(&mut conn, "legacy:s", "legacy").await, 0, "acked");
    terminate(&mut host);
}
