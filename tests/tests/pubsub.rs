//! The Pub/Sub source on a real redis-server: pattern subscriptions get
//! matching channels only (channel as `message.stream`), retries run in
//! memory up to `max_attempts`, rejects and exhausted messages land in the
//! DLQ with channel and pattern byte for byte, and a Redis restart, or a
//! connection gone silent (noticed by the subscriber's `PING`), is followed
//! by a resubscribe whose gap the metrics show.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use streamhost::config::{PluginConfig, SourceKind};
use streamhost_tests::ledger::{self, RawFields};
use streamhost_tests::*;

fn recorder(names: &[&str]) -> PluginConfig {
    let mut p = plugin("recorder", artifacts::RECORDER, "");
    p.stream.clear();
    p.subscribe = Some(names.iter().map(|n| n.to_string()).collect());
    assert!(matches!(p.source(), SourceKind::Subscribe(_)));
    p
}

async fn publish(conn: &mut MultiplexedConnection, channel: &str, payload: &[u8]) {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(payload)
        .query_async(conn)
        .await
        .expect("PUBLISH");
}

/// Waits until the server counts `channels` subscribed channels and `patterns` patterns.
async fn subscribed(conn: &MultiplexedConnection, channels: usize, patterns: i64) -> bool {
    wait_until(Duration::from_secs(20), || {
        let mut conn = conn.clone();
        async move {
            let numpat: i64 = redis::cmd("PUBSUB")
                .arg("NUMPAT")
                .query_async(&mut conn)
                .await
                .expect("PUBSUB NUMPAT");
            let listed: Vec<String> = redis::cmd("PUBSUB")
                .arg("CHANNELS")
                .query_async(&mut conn)
                .await
                .expect("PUBSUB CHANNELS");
            // The host's own channels (deploy notices) do not count.
            let ours = listed
                .iter()
                .filter(|c| !c.starts_with("streamhost:"))
                .count();
            numpat == patterns && ours == channels
        }
    })
    .await
}

async fn dead_letters(conn: &mut MultiplexedConnection, dlq: &str) -> Vec<RawFields> {
    ledger::stream_fields(conn, dlq).await
}

fn get(fields: &RawFields, name: &str) -> Option<Vec<u8>> {
    ledger::field(fields, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_subscription_receives_matching_channels_only() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let p = recorder(&["events:*", "cache:invalidate"]);
    let mut host = HostProcess::spawn(dir.path(), "host", &config(&redis.url(), vec![p]));
    assert!(subscribed(&conn, 1, 1).await, "{}", host.log_tail());
    for (channel, word) in [
        ("events:a", "m1"),
        ("other:x", "no1"),
        ("events:b", "m2"),
        ("cache:invalidate", "m3"),
        ("cache:other", "no2"),
        ("events", "no3"),
    ] {
        publish(&mut conn, channel, word.as_bytes()).await;
    }
    let done = wait_until(Duration::from_secs(20), || {
        let n = ledger::recorder_data(&host.log()).len();
        async move { n >= 3 }
    })
    .await;
    assert!(done, "{}", host.log_tail());
    // Anything that was going to arrive has: the last publish was handled.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines: Vec<String> = ledger::log_lines(&host.log(), "recorder data ")
        .into_iter()
        .map(|l| {
            let rest = l.text.split("recorder data ").nth(1).unwrap_or_default();
            rest.split(" plugin=").next().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            "m1 attempt 1 stream events:a".to_owned(),
            "m2 attempt 1 stream events:b".to_owned(),
            "m3 attempt 1 stream cache:invalidate".to_owned(),
        ],
        "matching channels only, each once, with its channel"
    );
    host.signal("-TERM");
    assert_eq!(
        host.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_and_exhausted_retries_leave_a_dead_letter_with_channel_and_pattern() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let mut p = recorder(&["jobs:*", "plain"]);
    p.retry.max_attempts = 3;
    let mut host = HostProcess::spawn(dir.path(), "host", &config(&redis.url(), vec![p]));
    assert!(subscribed(&conn, 1, 1).await, "{}", host.log_tail());
    let rejected = b"r1 reject \xff\x00bytes".to_vec();
    publish(&mut conn, "jobs:a", &rejected).await;
    publish(&mut conn, "plain", b"flaky fail_times=2").await;
    publish(&mut conn, "jobs:b", b"doomed fail_times=99").await;
    let dlq = "dlq:jobs:*:recorder";
    let done = wait_until(Duration::from_secs(20), || {
        let mut conn = conn.clone();
        async move { dead_letters(&mut conn, dlq).await.len() >= 2 }
    })
    .await;
    assert!(done, "{}", host.log_tail());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut letters = dead_letters(&mut conn, dlq).await;
    letters.sort_by_key(|f| get(f, "dlq.reason"));
    assert_eq!(
        letters.len(),
        2,
        "the flaky message succeeded on its third attempt"
    );
    let (exhausted, reject) = (&letters[0], &letters[1]);
    assert_eq!(get(reject, "dlq.reason").as_deref(), Some(&b"rejected"[..]));
    assert_eq!(
        get(reject, "msg.data"),
        Some(rejected),
        "payload byte for byte"
    );
    assert_eq!(get(reject, "dlq.channel").as_deref(), Some(&b"jobs:a"[..]));
    assert_eq!(get(reject, "dlq.pattern").as_deref(), Some(&b"jobs:*"[..]));
    assert_eq!(
        get(exhausted, "dlq.reason").as_deref(),
        Some(&b"attempts-exhausted"[..])
    );
    assert_eq!(
        get(exhausted, "dlq.channel").as_deref(),
        Some(&b"jobs:b"[..])
    );
    assert_eq!(get(exhausted, "dlq.attempts").as_deref(), Some(&b"3"[..]));
    let attempts = |word: &str| -> Vec<u32> {
        ledger::recorder_data(&host.log())
            .into_iter()
            .filter(|h| h.id == word)
            .map(|h| h.attempt)
            .collect()
    };
    assert_eq!(attempts("flaky"), vec![1, 2, 3], "retried in memory");
    assert_eq!(attempts("doomed"), vec![1, 2, 3]);
    assert_eq!(attempts("r1"), vec![1]);
    host.signal("-TERM");
    assert_eq!(
        host.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_resubscribes_and_the_metrics_show_the_gap() {
    let mut redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let p = recorder(&["events:*"]);
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let metrics = host.metrics("recorder", "events:*");
    assert!(subscribed(&conn, 0, 1).await);
    publish(&mut conn, "events:1", b"before").await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = metrics.acked.get();
            async move { n >= 1 }
        })
        .await
    );
    redis.restart(&[]).expect("restart redis");
    let mut conn = connect(&redis.url()).await;
    assert!(
        subscribed(&conn, 0, 1).await,
        "resubscribed after the restart"
    );
    publish(&mut conn, "events:2", b"after").await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let n = metrics.acked.get();
            async move { n >= 2 }
        })
        .await,
        "a message after the restart is handled"
    );
    let text = host.registry().encode();
    let labels = [("plugin", "recorder")];
    assert_eq!(
        sample(&text, "streamhost_pubsub_resubscribed_total", &labels),
        Some(1.0),
        "{text}"
    );
    let gap = sample(&text, "streamhost_pubsub_gap_seconds_total", &labels).expect("gap metric");
    assert!(gap > 0.0, "the gap is counted: {gap}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscribed_host_gets_every_message() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let host = |name: &str| {
        let mut p = recorder(&["bus"]);
        p.consumer = Some(name.to_owned());
        HostProcess::spawn(dir.path(), name, &config(&redis.url(), vec![p]))
    };
    let (mut a, mut b) = (host("host-a"), host("host-b"));
    let both = wait_until(Duration::from_secs(20), || {
        let mut conn = conn.clone();
        async move {
            let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("bus")
                .query_async(&mut conn)
                .await
                .expect("PUBSUB NUMSUB");
            counts.first().is_some_and(|(_, n)| *n == 2)
        }
    })
    .await;
    assert!(both, "{}\n{}", a.log_tail(), b.log_tail());
    for i in 0..20 {
        publish(&mut conn, "bus", format!("b{i}").as_bytes()).await;
    }
    for h in [&a, &b] {
        let all = wait_until(Duration::from_secs(20), || {
            let n = ledger::recorder_data(&h.log()).len();
            async move { n >= 20 }
        })
        .await;
        assert!(all, "{}", h.log_tail());
        let words: Vec<String> = ledger::recorder_data(&h.log())
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(
            words,
            (0..20).map(|i| format!("b{i}")).collect::<Vec<_>>(),
            "broadcast, in order"
        );
    }
    for h in [&mut a, &mut b] {
        h.signal("-TERM");
        assert_eq!(h.wait(Duration::from_secs(20)), Some(0), "{}", h.log_tail());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_of_a_message_are_committed_once() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut conn = connect(&redis.url()).await;
    let mut p = plugin("enricher", artifacts::ORDER_ENRICHER, "");
    p.stream.clear();
    p.subscribe = Some(vec!["orders:live".to_owned()]);
    p.allow.emit = vec!["events:orders:accepted".to_owned()];
    let mut host = HostProcess::spawn(dir.path(), "host", &config(&redis.url(), vec![p]));
    assert!(subscribed(&conn, 1, 0).await, "{}", host.log_tail());
    for i in 0..100 {
        publish(&mut conn, "orders:live", &order(i).remove(0).1).await;
    }
    let done = wait_until(Duration::from_secs(20), || {
        let mut conn = conn.clone();
        async move { xlen(&mut conn, "events:orders:accepted").await >= 100 }
    })
    .await;
    assert!(done, "{}", host.log_tail());
    host.signal("-TERM");
    assert_eq!(
        host.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        host.log_tail()
    );
    assert_eq!(xlen(&mut conn, "events:orders:accepted").await, 100);
}

/// A TCP proxy in front of Redis that can cut subscriber connections
/// silently: after [`Blackhole::cut`] the connections that had sent a
/// `SUBSCRIBE` or `PSUBSCRIBE` stay open but nothing crosses them any more
/// (as in a network partition: no reset, no end of stream), so only the
/// subscriber's own `PING` can notice. New connections pass; the proxy
/// records when one subscribes.
struct Blackhole {
    addr: std::net::SocketAddr,
    /// Per subscriber connection: whether it is silenced.
    silenced: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
    /// When each subscriber connection sent its first (P)SUBSCRIBE.
    subscribes: Arc<Mutex<Vec<Instant>>>,
}

impl Blackhole {
    async fn start(redis: std::net::SocketAddr) -> Blackhole {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let silenced: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let subscribes: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (silenced2, subscribes2) = (silenced.clone(), subscribes.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(redis).await else {
                    continue;
                };
                let quiet = Arc::new(AtomicBool::new(false));
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (silenced, subscribes) = (silenced2.clone(), subscribes2.clone());
                let quiet_up = quiet.clone();
                // A silenced connection's bytes are read and dropped; its
                // sockets stay open, so nothing is reset or ended.
                tokio::spawn(async move {
                    let mut seen = false;
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        let chunk = &buf[..n];
                        if !seen
                            && chunk
                                .to_ascii_uppercase()
                                .windows(9)
                                .any(|w| w == b"SUBSCRIBE")
                        {
                            seen = true;
                            subscribes.lock().expect("lock").push(Instant::now());
                            silenced.lock().expect("lock").push(quiet_up.clone());
                        }
                        if quiet_up.load(Ordering::SeqCst) {
                            continue;
                        }
                        if sw.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    std::future::pending::<()>().await;
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = sr.read(&mut buf).await {
                        if quiet.load(Ordering::SeqCst) {
                            continue;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    std::future::pending::<()>().await;
                });
            }
        });
        Blackhole {
            addr,
            silenced,
            subscribes,
        }
    }

    /// Silences every connection that has subscribed; returns how many subscribed so far.
    fn cut(&self) -> usize {
        for quiet in self.silenced.lock().expect("lock").iter() {
            quiet.store(true, Ordering::SeqCst);
        }
        self.subscribes.lock().expect("lock").len()
    }

    /// When the first connection after the first `before` subscribed.
    fn subscribed_after(&self, before: usize) -> Option<Instant> {
        self.subscribes.lock().expect("lock").get(before).copied()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dropped_subscription_is_noticed_by_ping_and_resubscribed() {
    // The subscriber pings a quiet connection every 10 s and gives the
    // answer 5 s (`subscriber.rs`: PING_EVERY, CONNECT_TIMEOUT).
    const BOUND: Duration = Duration::from_secs(15);
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let redis_addr: std::net::SocketAddr = redis
        .url()
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("redis address");
    let proxy = Blackhole::start(redis_addr).await;
    let p = recorder(&["events:*"]);
    let host = InProcessHost::start(config(&format!("redis://{}", proxy.addr), vec![p])).await;
    let metrics = host.metrics("recorder", "events:*");
    assert!(subscribed(&conn, 0, 1).await);
    publish(&mut conn, "events:1", b"before").await;
    let handled = |n: u64| {
        let metrics = metrics.clone();
        wait_until(Duration::from_secs(10), move || {
            let acked = metrics.acked.get();
            async move { acked >= n }
        })
    };
    assert!(handled(1).await, "a message before the cut is handled");

    let before = proxy.cut();
    let cut_at = Instant::now();
    // Published into the silent connection: lost (at-most-once), and part
    // of the counted gap.
    publish(&mut conn, "events:2", b"into the void").await;
    // The resubscribe happens through the proxy, on a new connection.
    let noticed = wait_until(BOUND + Duration::from_secs(10), || {
        let seen = proxy.subscribed_after(before).is_some();
        async move { seen }
    })
    .await;
    assert!(noticed, "the dead subscription was never noticed");
    let resubscribed_at = proxy.subscribed_after(before).expect("resubscribed");
    let took = resubscribed_at - cut_at;
    assert!(
        took <= BOUND + Duration::from_secs(3),
        "noticed after {took:?}, bound {BOUND:?} (+3 s for a loaded machine)"
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            let n = metrics.resubscribed.get();
            async move { n >= 1 }
        })
        .await,
        "resubscribe not counted"
    );
    publish(&mut conn, "events:3", b"after").await;
    assert!(
        handled(2).await,
        "a message after the resubscribe is handled"
    );
    let text = host.registry().encode();
    let labels = [("plugin", "recorder")];
    let gap = sample(&text, "streamhost_pubsub_gap_seconds_total", &labels).expect("gap metric");
    assert!(gap > 0.0, "the gap is counted: {gap}");
    // The message published into the silent connection never arrived.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        metrics.acked.get(),
        2,
        "events:2 was lost in the gap, events:3 handled"
    );
    host.stop().await;
}
