//! Redis Cluster: a private 3-master/3-replica cluster per test
//! ([`start_cluster`]), a sharded stream (`shards = 6`, `{stream:i}`) read by
//! real host processes: a host killed with -9 and a master killed (its
//! replica promoted) mid-run; a shard's slot migrated mid-run; dead letters
//! and replay per shard, each in its shard's slot; bad input. The
//! `sequencer` plugin logs `sequencer <key> <seq> ...` for every run: the
//! hosts' logs are the ledger of what ran.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use streamhost::config::{PluginConfig, shard_key, shard_of};
use streamhost::connection::{Conn, slot};
use streamhost_tests::ledger;
use streamhost_tests::*;

/// One cluster at a time: six redis-servers per test on two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GROUP: &str = "sequencer";

fn sequencer(stream: &str, shards: u32, consumer: &str) -> PluginConfig {
    let mut p = plugin("sequencer", artifacts::SEQUENCER, stream);
    p.shards = Some(shards);
    p.consumer = Some(consumer.to_owned());
    p.batch = 200;
    p.concurrency = 2;
    p
}

/// Entry `i`: key `c<i % 500>`, sequence `i`, and `extra` fields.
fn entry(i: usize, extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    let mut fields = vec![
        ("key".to_owned(), format!("c{}", i % 500).into_bytes()),
        ("seq".to_owned(), i.to_string().into_bytes()),
    ];
    fields.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())),
    );
    fields
}

/// XADDs entries to the shard their `key` field picks (one pipeline per
/// shard, as a cluster wants); returns the count per shard.
async fn produce_sharded(
    conn: &mut Conn,
    stream: &str,
    shards: u32,
    range: std::ops::Range<usize>,
    fields: impl Fn(usize) -> Vec<(String, Vec<u8>)>,
) -> Vec<usize> {
    let mut counts = vec![0; shards as usize];
    let all: Vec<usize> = range.collect();
    for chunk in all.chunks(2000) {
        let mut pipes: HashMap<u32, redis::Pipeline> = HashMap::new();
        for &i in chunk {
            let f = fields(i);
            let key = &f.iter().find(|(n, _)| n == "key").expect("key field").1;
            let shard = shard_of(key, shards);
            counts[shard as usize] += 1;
            pipes
                .entry(shard)
                .or_insert_with(redis::pipe)
                .cmd("XADD")
                .arg(shard_key(stream, shard))
                .arg("*")
                .arg(f)
                .ignore();
        }
        for (_, pipe) in pipes {
            let () = pipe.query_async(conn).await.expect("XADD to a shard");
        }
    }
    counts
}

/// `sequencer <key> <seq> attempt <n> stream <stream>` lines of a log.
fn sequenced(log: &str) -> Vec<(String, usize, u32, String)> {
    ledger::strip_ansi(log)
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("sequencer ")? + "sequencer ".len()..];
            let w: Vec<&str> = rest.split_whitespace().collect();
            match w.as_slice() {
                [key, seq, "attempt", n, "stream", stream, ..] => Some((
                    (*key).to_owned(),
                    seq.parse().ok()?,
                    n.parse().ok()?,
                    (*stream).to_owned(),
                )),
                _ => None,
            }
        })
        .collect()
}

/// Per shard: (entries read by the group, pending); `None` for a shard
/// that cannot be asked now (failing over).
async fn progress(conn: &mut Conn, stream: &str, shards: u32) -> Option<(u64, u64)> {
    group_progress(conn, stream, shards, GROUP).await
}

async fn group_progress(
    conn: &mut Conn,
    stream: &str,
    shards: u32,
    group: &str,
) -> Option<(u64, u64)> {
    let (mut read, mut pending) = (0, 0);
    for i in 0..shards {
        let reply: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(shard_key(stream, i))
            .query_async(conn)
            .await
            .ok()?;
        let redis::Value::Array(groups) = reply else {
            return None;
        };
        for g in groups {
            let map: HashMap<String, redis::Value> = redis::from_redis_value(g).ok()?;
            let name: String = redis::from_redis_value(map.get("name")?.clone()).ok()?;
            if name != group {
                continue;
            }
            let int = |k: &str| match map.get(k) {
                Some(redis::Value::Int(n)) => Some(*n as u64),
                _ => None,
            };
            read += int("entries-read")?;
            pending += int("pending")?;
        }
    }
    Some((read, pending))
}

/// Entries pending on `consumer` over all shards (`XPENDING` summaries).
async fn pending_of(conn: &mut Conn, stream: &str, shards: u32, consumer: &str) -> u64 {
    let mut total = 0;
    for i in 0..shards {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(shard_key(stream, i))
            .arg(GROUP)
            .query_async(conn)
            .await
            .expect("XPENDING");
        let redis::Value::Array(parts) = reply else {
            continue;
        };
        let Some(redis::Value::Array(consumers)) = parts.get(3) else {
            continue;
        };
        for c in consumers {
            let (name, count): (String, String) =
                redis::from_redis_value(c.clone()).expect("consumer");
            if name == consumer {
                total += count.parse::<u64>().unwrap_or(0);
            }
        }
    }
    total
}

/// Waits for every master to have its writes on a replica.
async fn replicate(cluster: &TestCluster) {
    for port in cluster.masters().expect("masters") {
        let c = connect(&format!("redis://127.0.0.1:{port}")).await;
        // Short WAITs (under the client's response timeout) until a replica
        // acknowledged everything (a fresh replica may still be syncing).
        let replicated = wait_until(Duration::from_secs(20), || async {
            redis::cmd("WAIT")
                .arg(1)
                .arg(200)
                .query_async::<i64>(&mut c.clone())
                .await
                .is_ok_and(|n| n >= 1)
        })
        .await;
        assert!(replicated, "master {port} has no replica in sync");
    }
}

async fn wait_progress(
    conn: &Conn,
    stream: &str,
    shards: u32,
    done: impl Fn(u64, u64) -> bool,
) -> bool {
    wait_until(Duration::from_secs(120), || async {
        progress(&mut conn.clone(), stream, shards)
            .await
            .is_some_and(|(read, pending)| done(read, pending))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_stream_survives_a_killed_host_and_a_killed_master() {
    let _one = SERIAL.lock().await;
    let started = Instant::now();
    let mut cluster = start_cluster();
    eprintln!("cluster up in {:.1} s", started.elapsed().as_secs_f64());
    let seeds = cluster.urls();
    let mut conn = connect_cluster(&seeds).await;
    let (stream, shards, total) = ("orders", 6u32, 60_000usize);
    let counts = produce_sharded(&mut conn, stream, shards, 0..total, |i| entry(i, &[])).await;
    assert!(
        counts.iter().all(|&c| c > 5_000),
        "keys spread over the shards: {counts:?}"
    );
    let masters: BTreeSet<u16> = (0..shards)
        .map(|i| {
            cluster
                .master_of_slot(slot(shard_key(stream, i).as_bytes()))
                .expect("owner")
        })
        .collect();
    assert!(masters.len() >= 2, "the shards spread over the masters");
    replicate(&cluster).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = |consumer: &str| cluster_config(&seeds, vec![sequencer(stream, shards, consumer)]);
    let mut a = HostProcess::spawn(dir.path(), "host-a", &cfg("host-a"));
    let mut b = HostProcess::spawn(dir.path(), "host-b", &cfg("host-b"));
    assert!(
        wait_progress(&conn, stream, shards, |read, _| read >= 15_000).await,
        "hosts did not get going; log:\n{}",
        a.log_tail()
    );
    a.signal("-KILL");
    let _ = a.child.wait();
    let held_by_a = pending_of(&mut conn, stream, shards, "host-a").await;
    assert!(
        wait_progress(&conn, stream, shards, |read, _| read >= 30_000).await,
        "host b stalled; log:\n{}",
        b.log_tail()
    );
    let victim = cluster
        .master_of_slot(slot(shard_key(stream, 0).as_bytes()))
        .expect("owner of shard 0");
    cluster.kill(victim);
    let killed_at = Instant::now();
    cluster.wait_ok().expect("replica promoted");
    eprintln!(
        "master {victim} killed; cluster ok again after {:.1} s",
        killed_at.elapsed().as_secs_f64()
    );
    let settled = wait_progress(&conn, stream, shards, |read, pending| {
        read >= total as u64 && pending == 0
    })
    .await;
    assert!(settled, "not settled; host b log:\n{}", b.log_tail());
    b.signal("-TERM");
    assert_eq!(b.wait(Duration::from_secs(30)), Some(0), "{}", b.log_tail());

    let runs: Vec<_> = sequenced(&a.log())
        .into_iter()
        .chain(sequenced(&b.log()))
        .collect();
    let mut times: HashMap<usize, usize> = HashMap::new();
    for (_, seq, _, _) in &runs {
        *times.entry(*seq).or_default() += 1;
    }
    let lost: Vec<usize> = (0..total).filter(|i| !times.contains_key(i)).collect();
    let duplicates: usize = times.values().map(|n| n - 1).sum();
    eprintln!(
        "cluster kill test: produced {total} over {shards} shards, handled {}, lost {}, duplicates {duplicates} \
         (pending on host a at its kill: {held_by_a}), {:.1} s",
        times.len(),
        lost.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        lost.is_empty(),
        "lost {} entries, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    // Duplicates come from the entries host a held at its death (claimed and
    // run again by b; at most those pending on it) and from the killed
    // master's last acks not yet on its replica (a moment of one shard's
    // traffic, ~2 batches here).
    assert!(
        duplicates <= held_by_a as usize + 1_000,
        "{duplicates} duplicates: more than host a's {held_by_a} in-flight entries and an unreplicated tail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_slot_migrates_mid_run_without_loss_or_stall() {
    let _one = SERIAL.lock().await;
    let cluster = start_cluster();
    let seeds = cluster.urls();
    let mut conn = connect_cluster(&seeds).await;
    let (stream, shards, total) = ("moving", 6u32, 20_000usize);
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = cluster_config(&seeds, vec![sequencer(stream, shards, "mover")]);
    let mut host = HostProcess::spawn(dir.path(), "mover", &cfg);
    let counts = produce_sharded(&mut conn, stream, shards, 0..total, |i| entry(i, &[])).await;
    let in_shard_0 = counts[0] as u64;
    assert!(
        wait_progress(&conn, stream, shards, |read, _| read >= 3_000).await,
        "host did not get going; log:\n{}",
        host.log_tail()
    );
    let moving = slot(shard_key(stream, 0).as_bytes());
    let from = cluster.master_of_slot(moving).expect("owner");
    let to = *cluster
        .masters()
        .expect("masters")
        .iter()
        .find(|&&p| p != from)
        .expect("another master");
    let sampler = {
        let conn = conn.clone();
        tokio::spawn(async move {
            // Longest time shard 0 (the one moving) had entries waiting and
            // read none.
            let (mut last, mut since, mut longest) = (0u64, Instant::now(), Duration::ZERO);
            loop {
                if let Some((read, _)) = progress(&mut conn.clone(), stream, 1).await {
                    if read != last {
                        longest = longest.max(since.elapsed());
                        (last, since) = (read, Instant::now());
                    }
                    if read >= in_shard_0 {
                        return longest;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let before = progress(&mut conn, stream, 1).await.map(|p| p.0);
    assert!(
        before.is_some_and(|read| read < in_shard_0),
        "shard 0 must still have entries to read when its slot moves ({before:?} of {in_shard_0})"
    );
    let moved = Instant::now();
    cluster.migrate_slot(moving, to).expect("migrate the slot");
    eprintln!(
        "slot {moving} of {} moved {from} -> {to} in {} ms",
        shard_key(stream, 0),
        moved.elapsed().as_millis()
    );
    let settled = wait_progress(&conn, stream, shards, |read, pending| {
        read >= total as u64 && pending == 0
    })
    .await;
    assert!(settled, "not settled; log:\n{}", host.log_tail());
    let longest = tokio::time::timeout(Duration::from_secs(10), sampler)
        .await
        .expect("sampler ends")
        .expect("sampler");
    assert_eq!(cluster.master_of_slot(moving).expect("owner"), to);
    host.signal("-TERM");
    assert_eq!(
        host.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        host.log_tail()
    );
    let handled: BTreeSet<usize> = sequenced(&host.log()).into_iter().map(|r| r.1).collect();
    eprintln!(
        "slot migration: {} of {total} handled, longest stall {} ms",
        handled.len(),
        longest.as_millis()
    );
    assert_eq!(handled.len(), total, "every entry handled");
    assert!(longest < Duration::from_secs(5), "stalled {longest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_and_replay_stay_in_each_shards_slot() {
    let _one = SERIAL.lock().await;
    let cluster = start_cluster();
    let seeds = cluster.urls();
    let mut conn = connect_cluster(&seeds).await;
    let (stream, shards, total) = ("letters", 3u32, 300usize);
    // Every 10th entry is rejected; the others commit a state delete (an
    // effect: the commit script touches the shard's stream and its state key).
    let mut p = plugin("probe", artifacts::EFFECTS_PROBE, stream);
    p.shards = Some(shards);
    let cfg = cluster_config(&seeds, vec![p.clone()]);
    cfg.validate()
        .expect("a sharded plugin's keys each sit in their shard's slot");
    let fields = |i: usize| {
        let op = if i.is_multiple_of(10) {
            "nonsense"
        } else {
            "delete"
        };
        entry(i, &[("op", op), ("target", "x")])
    };
    let counts = produce_sharded(&mut conn, stream, shards, 0..total, fields).await;
    let host = InProcessHost::start(cfg.clone()).await;
    let tables = p.shard_tables();
    let settled = wait_until(Duration::from_secs(60), || async {
        let mut c = conn.clone();
        let mut letters = 0;
        for t in &tables {
            letters += xlen_any(&mut c, &t.dlq_stream()).await;
        }
        letters == (total / 10) as u64
            && group_progress(&mut c, stream, shards, "probe")
                .await
                .is_some_and(|(read, pending)| read == total as u64 && pending == 0)
    })
    .await;
    if !settled {
        let mut letters = Vec::new();
        for t in &tables {
            letters.push(xlen_any(&mut conn, &t.dlq_stream()).await);
        }
        let progress = group_progress(&mut conn, stream, shards, "probe").await;
        let sample: redis::Value = redis::cmd("XREVRANGE")
            .arg(tables[0].dlq_stream())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap_or(redis::Value::Nil);
        eprintln!("a letter: {sample:?}");
        panic!(
            "not every entry settled or dead-lettered: letters {letters:?}, (read, pending) {progress:?}"
        );
    }
    for (i, t) in tables.iter().enumerate() {
        let shard = shard_key(stream, i as u32);
        assert_eq!(t.stream, shard);
        for key in [t.dlq_stream(), t.redeliver_stream(), t.state_prefix()] {
            assert_eq!(
                slot(key.as_bytes()),
                slot(shard.as_bytes()),
                "{key} in {shard}'s slot"
            );
        }
        eprintln!(
            "shard {shard}: {} entries, DLQ {}",
            counts[i],
            t.dlq_stream()
        );
    }
    // `status` shows each shard's group and sums the sharded stream.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("letters.toml");
    std::fs::write(&path, toml::to_string(&cfg).expect("config")).expect("write config");
    let (code, out) = cli(&["status", "--json", "--config", &path.to_string_lossy()]);
    assert_eq!(code, Some(0), "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(
        report["groups"].as_array().map(Vec::len),
        Some(shards as usize),
        "{out}"
    );
    let sum = &report["sharded"][0];
    assert_eq!(sum["stream"], stream, "{out}");
    assert_eq!(sum["shards"], shards, "{out}");
    assert_eq!(sum["stream_length"], total, "{out}");
    assert_eq!(sum["dlq_length"], total / 10, "{out}");
    assert_eq!(sum["pending"], 0, "{out}");
    // Replay every shard's letters: they come back through its redelivery
    // stream and are dead-lettered again (still `nonsense`), each within its slot.
    let mut replayed = 0;
    for t in &tables {
        let report = streamhost::dlq::replay(
            &mut conn,
            &t.dlq_stream(),
            &streamhost::dlq::Filter {
                owner: Some(t.dlq_owner()),
                ..Default::default()
            },
            &streamhost::dlq::Selection::Matching,
            &Default::default(),
            |_, _| {},
            |_| {},
        )
        .await
        .expect("replay a shard's dead letters");
        replayed += report.replayed;
    }
    assert_eq!(replayed as usize, total / 10, "every letter replayed");
    let again = wait_until(Duration::from_secs(60), || async {
        let mut c = conn.clone();
        let mut n = 0;
        for t in &tables {
            n += xlen_any(&mut c, &t.dlq_stream()).await;
        }
        n == (total / 10) as u64
    })
    .await;
    assert!(
        again,
        "replayed letters handled again (and dead-lettered again)"
    );
    host.stop().await;
}

async fn xlen_any(conn: &mut (impl ConnectionLike + Send), key: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(conn)
        .await
        .unwrap_or(0)
}

/// Runs the CLI; returns (exit code, stderr + stdout).
fn cli(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(streamhost_bin())
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn bad_cluster_input_is_a_clear_error_with_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path.to_string_lossy().into_owned()
    };
    let component = artifacts::SEQUENCER;
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let unreachable = write(
        "unreachable.toml",
        &format!(
            "[redis]\ncluster = true\nurls = [\"redis://127.0.0.1:{port}\"]\n[[plugin]]\nname = \"s\"\ncomponent = \"{component}\"\nstream = \"orders\"\nshards = 3\n"
        ),
    );
    for command in ["check", "run"] {
        let started = Instant::now();
        let (code, out) = cli(&[command, "--config", &unreachable]);
        assert_eq!(code, Some(2), "{command}: {out}");
        assert!(
            out.contains("Redis Cluster") && out.contains(&port.to_string()),
            "{command}: {out}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{command} took too long"
        );
    }
    let cases = [
        (
            "cross.toml",
            format!(
                "[redis]\ncluster = true\n[[plugin]]\nname = \"s\"\ncomponent = \"{component}\"\nstream = \"{{a}}:s\"\n[plugin.dlq]\nstream = \"dlq:b\"\n"
            ),
            "dlq.stream",
        ),
        (
            "nokey.toml",
            format!(
                "[[plugin]]\nname = \"s\"\ncomponent = \"{component}\"\nstream = \"s\"\nordering = {{}}\n"
            ),
            "key",
        ),
        (
            "emptykey.toml",
            format!(
                "[[plugin]]\nname = \"s\"\ncomponent = \"{component}\"\nstream = \"s\"\nordering = {{ key = \"\" }}\n"
            ),
            "ordering.key",
        ),
        (
            "braces.toml",
            format!(
                "[[plugin]]\nname = \"s\"\ncomponent = \"{component}\"\nstream = \"{{o}}\"\nshards = 4\n"
            ),
            "braces",
        ),
        (
            "shardlist.toml",
            format!(
                "[[plugin]]\nname = \"s\"\ncomponent = \"{component}\"\nlist = \"q\"\nshards = 4\n"
            ),
            "shards",
        ),
    ];
    for (name, text, needle) in cases {
        let path = write(name, &text);
        let (code, out) = cli(&["check", "--offline", "--config", &path]);
        assert_eq!(code, Some(2), "{name}: {out}");
        assert!(out.contains(needle), "{name} should name {needle:?}: {out}");
    }
}
