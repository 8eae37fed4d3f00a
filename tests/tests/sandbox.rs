//! The sandbox: every hostile plugin, running beside `order-validator` under
//! load, ends in classified failures while every validator entry is acked and
//! the host keeps running with bounded memory; bad components are refused at
//! load with an error naming the plugin.
//!
//! The tests of this file run one at a time (see [`serial`]): they read the
//! process's resident memory and compare throughput, which parallel hosts in
//! the same process would blur. Each prints the validator's throughput;
//! `STREAMHOST_SANDBOX_ENTRIES` (validator) and `STREAMHOST_SANDBOX_HOSTILE`
//! raise the load for a measurement run, e.g.
//! `STREAMHOST_SANDBOX_ENTRIES=100000 cargo test -p streamhost-tests --test sandbox -- --nocapture`.

use std::path::Path;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use streamhost::PluginMetrics;
use streamhost::TrapKind;
use streamhost::config::{Config, LimitsConfig, Metering, OnTrap, PluginConfig};
use streamhost_tests::*;

const VALIDATOR: &str = "order-validator";
const VALIDATOR_STREAM: &str = "events:orders";
const HOSTILE_STREAM: &str = "events:hostile";
/// Growth of resident memory allowed while the hostile entries run. Generous
/// for allocator noise, far below what 40 leaked instances would take.
const RSS_GROWTH_BOUND_KIB: u64 = 192 * 1024;
const WAIT: Duration = Duration::from_secs(120);

/// One test at a time in this binary: resident memory and throughput are
/// per process. (Each test has its own runtime; tokio's mutex works across them.)
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Validator entries per test (a few thousand unless raised for measurement).
fn validator_entries() -> usize {
    env_count("STREAMHOST_SANDBOX_ENTRIES", 3_000)
}

/// Hostile entries per test: enough to see every one classified, and to see
/// a leak per invocation (40 x 16 MiB for memory-hog) in the memory bound.
/// Raised for measurement to keep the hostile plugin busy for a whole run.
fn hostile_entries() -> usize {
    env_count("STREAMHOST_SANDBOX_HOSTILE", 40).max(1)
}

fn env_count(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Small limits so every hostile entry fails fast.
fn tight_limits() -> LimitsConfig {
    LimitsConfig {
        fuel: 10_000_000,
        timeout_ms: 200,
        memory_mib: 16,
        ..LimitsConfig::default()
    }
}

/// A hostile plugin on its own stream; traps go straight to its DLQ.
fn hostile(name: &str, component: &str, limits: LimitsConfig) -> PluginConfig {
    let mut p = plugin(name, component, HOSTILE_STREAM);
    p.limits = limits;
    p.retry.on_trap = OnTrap::DeadLetter;
    // Entries queued behind slow hostile ones wait longer than the harness's
    // 1 s claim threshold; the claimer would hand them out a second time.
    p.claim.min_idle_ms = 600_000;
    p
}

fn plain(_: usize) -> Vec<(String, Vec<u8>)> {
    vec![("n".to_owned(), b"1".to_vec())]
}

/// Resident memory of a process, in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// `(dlq.reason, dlq.error)` of every entry in a dead-letter stream, oldest first.
async fn dlq_entries(conn: &mut MultiplexedConnection, stream: &str) -> Vec<(String, String)> {
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    entries
        .into_iter()
        .map(|(_, fields)| {
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (get("dlq.reason"), get("dlq.error"))
        })
        .collect()
}

/// [`wait_until`] with [`WAIT`], plus the seconds since `started` when it returned.
async fn timed<F, Fut>(started: Instant, check: F) -> (bool, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let done = wait_until(WAIT, check).await;
    (done, started.elapsed().as_secs_f64())
}

/// `streamhost_handler_fuel_sum` of a plugin, from the Prometheus text.
fn fuel_sum(text: &str, plugin: &str) -> f64 {
    let label = format!("plugin=\"{plugin}\"");
    text.lines()
        .filter(|l| l.starts_with("streamhost_handler_fuel_sum{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What a run beside the validator came to.
struct Run {
    validator: PluginMetrics,
    hostile: PluginMetrics,
    dlq: Vec<(String, String)>,
    rss_growth_kib: u64,
}

/// Runs `order-validator` under load beside `hostile` (fed `hostile_entries()`
/// entries made by `fields`), waits until both are done, and checks what holds
/// for every hostile plugin: each validator entry acked exactly once, nothing
/// left pending, the host still running until it is stopped cleanly, memory bounded.
async fn beside_validator(
    hostile: PluginConfig,
    fields: fn(usize) -> Vec<(String, Vec<u8>)>,
) -> Run {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let n = validator_entries();
    produce(&mut conn, VALIDATOR_STREAM, n, order).await;
    let hostile_n = hostile_entries();
    produce(&mut conn, HOSTILE_STREAM, hostile_n, fields).await;
    let name = hostile.name.clone();
    let validator_plugin = plugin(VALIDATOR, artifacts::ORDER_VALIDATOR, VALIDATOR_STREAM);
    let host = InProcessHost::start(config(&redis.url(), vec![validator_plugin, hostile])).await;
    let rss_before = rss_kib("self");
    let started = Instant::now();
    let validator = host.metrics(VALIDATOR, VALIDATOR_STREAM);
    let hostile_m = host.metrics(&name, HOSTILE_STREAM);

    // Every hostile entry ends acked or dead-lettered (traps go straight to the DLQ).
    let ((validator_done, validator_secs), (hostile_done, hostile_secs)) = tokio::join!(
        timed(started, || async { validator.acked.get() >= n as u64 }),
        timed(started, || async {
            hostile_m.acked.get() + hostile_m.dead_lettered.get() >= hostile_n as u64
        }),
    );
    let rss_after = rss_kib("self");
    println!(
        "sandbox: {n} validator entries in {validator_secs:.2} s = {:.0}/s beside {name} ({hostile_n} hostile entries done after {hostile_secs:.2} s; RSS {rss_before} -> {rss_after} KiB)",
        n as f64 / validator_secs
    );
    let host_metrics_text = host.registry().encode();
    // Stopping returns the host's result: it must still be running, cleanly.
    host.stop().await;

    assert!(
        validator_done,
        "validator acked {} of {n}",
        validator.acked.get()
    );
    assert!(
        hostile_done,
        "{name}: {} of {hostile_n} hostile entries acked or dead-lettered",
        hostile_m.acked.get() + hostile_m.dead_lettered.get()
    );
    assert_eq!(
        validator.received.get(),
        n as u64,
        "each validator entry handled once"
    );
    assert_eq!(validator.acked.get(), n as u64);
    assert_eq!(pending(&mut conn, VALIDATOR_STREAM, VALIDATOR).await, 0);
    assert_eq!(
        xlen(&mut conn, &format!("dlq:{VALIDATOR_STREAM}:{VALIDATOR}")).await,
        0
    );
    assert_eq!(
        pending(&mut conn, HOSTILE_STREAM, &name).await,
        0,
        "{name}: hostile entries left pending"
    );
    let fuel = fuel_sum(&host_metrics_text, VALIDATOR);
    println!(
        "sandbox: order-validator fuel per entry: {:.0}",
        fuel / n as f64
    );
    assert!(fuel > 0.0, "fuel per invocation is measured");
    Run {
        validator,
        hostile: hostile_m,
        dlq: dlq_entries(&mut conn, &format!("dlq:{HOSTILE_STREAM}:{name}")).await,
        rss_growth_kib: rss_after.saturating_sub(rss_before),
    }
}

/// The checks for a hostile plugin whose every entry must trap with `kind`.
async fn hostile_traps(
    name: &str,
    component: &str,
    limits: LimitsConfig,
    fields: fn(usize) -> Vec<(String, Vec<u8>)>,
    kind: TrapKind,
) {
    let _serial = serial().await;
    let run = beside_validator(hostile(name, component, limits), fields).await;
    let n = hostile_entries() as u64;
    assert_eq!(
        run.hostile.trap(kind).get(),
        n,
        "{name}: every entry classified as {kind}"
    );
    for other in [
        TrapKind::Fuel,
        TrapKind::Timeout,
        TrapKind::Memory,
        TrapKind::StackOverflow,
        TrapKind::Panic,
    ] {
        if other != kind {
            assert_eq!(
                run.hostile.trap(other).get(),
                0,
                "{name}: no entry classified as {other}"
            );
        }
    }
    assert_eq!(run.hostile.acked.get(), 0);
    assert_eq!(run.dlq.len() as u64, n, "{name}: every entry dead-lettered");
    let label = format!("trap:{}", kind.as_str());
    for (reason, error) in &run.dlq {
        assert_eq!(reason, &label, "{name}: dlq.reason (error: {error})");
        assert!(
            error.starts_with(&kind.to_string()),
            "{name}: dlq.error names the kind: {error}"
        );
    }
    println!("sandbox: {name}: dlq.error = {:?}", run.dlq[0].1);
    for (_, error) in &run.dlq {
        assert!(
            !error.chars().any(char::is_control),
            "{name}: dlq.error is one sanitized line: {error:?}"
        );
    }
    assert!(
        run.rss_growth_kib < RSS_GROWTH_BOUND_KIB,
        "{name}: host memory grew by {} KiB",
        run.rss_growth_kib
    );
    assert_eq!(run.validator.trap(kind).get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_burner_runs_out_of_fuel() {
    // A generous deadline so that fuel, not time, is what ends the loop.
    let limits = LimitsConfig {
        timeout_ms: 10_000,
        ..tight_limits()
    };
    hostile_traps(
        "fuel-burner",
        artifacts::FUEL_BURNER,
        limits,
        plain,
        TrapKind::Fuel,
    )
    .await;
}

/// `limits.metering = "epoch-only"` (trusted plugins): the same loop runs
/// without fuel counting, so it is the wall-clock limit that ends it, and
/// the validator beside it (fuel-metered, the default) is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_burner_under_epoch_only_metering_times_out() {
    let limits = LimitsConfig {
        metering: Metering::EpochOnly,
        ..tight_limits()
    };
    hostile_traps(
        "fuel-burner",
        artifacts::FUEL_BURNER,
        limits,
        plain,
        TrapKind::Timeout,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_hits_the_memory_limit() {
    // Filling 16 MiB costs fuel; the memory limit must be what stops it.
    let limits = LimitsConfig {
        fuel: 10_000_000_000,
        timeout_ms: 10_000,
        ..tight_limits()
    };
    hostile_traps(
        "memory-hog",
        artifacts::MEMORY_HOG,
        limits,
        plain,
        TrapKind::Memory,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_smasher_overflows_the_stack() {
    let limits = LimitsConfig {
        timeout_ms: 10_000,
        ..tight_limits()
    };
    hostile_traps(
        "stack-smasher",
        artifacts::STACK_SMASHER,
        limits,
        plain,
        TrapKind::StackOverflow,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicker_traps() {
    hostile_traps(
        "panicker",
        artifacts::PANICKER,
        tight_limits(),
        plain,
        TrapKind::Panic,
    )
    .await;
}

fn mode_sleep(_: usize) -> Vec<(String, Vec<u8>)> {
    vec![("mode".to_owned(), b"sleep".to_vec())]
}

fn mode_spin(_: usize) -> Vec<(String, Vec<u8>)> {
    vec![("mode".to_owned(), b"spin".to_vec())]
}

/// Sleeping blocks inside a host call, out of reach of epoch interruption:
/// the host's own timer must end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowpoke_sleeping_in_a_host_call_times_out() {
    let limits = LimitsConfig {
        fuel: u64::MAX / 2,
        ..tight_limits()
    };
    hostile_traps(
        "slowpoke",
        artifacts::SLOWPOKE,
        limits,
        mode_sleep,
        TrapKind::Timeout,
    )
    .await;
}

/// Busy-waiting in Wasm: epoch interruption ends it (fuel is not the limit here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowpoke_spinning_times_out() {
    let limits = LimitsConfig {
        fuel: u64::MAX / 2,
        ..tight_limits()
    };
    hostile_traps(
        "slowpoke",
        artifacts::SLOWPOKE,
        limits,
        mode_spin,
        TrapKind::Timeout,
    )
    .await;
}

/// `ok` from escape-artist means every probe (files, directories, env, args)
/// was refused; it rejects when anything succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_artist_is_refused_everything() {
    let _serial = serial().await;
    let run = beside_validator(
        hostile("escape-artist", artifacts::ESCAPE_ARTIST, tight_limits()),
        plain,
    )
    .await;
    assert!(run.dlq.is_empty(), "escape-artist got out: {:?}", run.dlq);
    assert_eq!(run.hostile.acked.get(), hostile_entries() as u64);
    assert_eq!(run.hostile.rejected.get(), 0);
}

/// `socket-opener` loads (wasi:sockets is linked, every operation denied),
/// and every socket operation fails inside the guest: its entries are acked
/// (it rejects if anything succeeded) and the TCP listener and UDP socket it
/// aims at see nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_opener_loads_and_every_socket_operation_fails() {
    let _serial = serial().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let udp = std::net::UdpSocket::bind(addr).expect("udp on the same port");
    udp.set_nonblocking(true).expect("nonblocking");
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let n = 5;
    produce(&mut conn, HOSTILE_STREAM, n, |_| {
        vec![("addr".to_owned(), addr.to_string().into_bytes())]
    })
    .await;
    let p = hostile("socket-opener", artifacts::SOCKET_OPENER, tight_limits());
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("socket-opener", HOSTILE_STREAM);
    let done = wait_until(WAIT, || async {
        m.acked.get() + m.dead_lettered.get() >= n as u64
    })
    .await;
    host.stop().await;
    assert!(
        done,
        "{} acked, {} dead-lettered",
        m.acked.get(),
        m.dead_lettered.get()
    );
    let dlq = dlq_entries(&mut conn, &format!("dlq:{HOSTILE_STREAM}:socket-opener")).await;
    assert!(dlq.is_empty(), "a socket operation succeeded: {dlq:?}");
    assert_eq!(m.acked.get(), n as u64);
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a connection reached the listener"
    );
    let mut buf = [0u8; 64];
    assert!(
        matches!(udp.recv_from(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a datagram reached the UDP socket"
    );
}

/// A plugin's `kv-delete` removes its own state and nothing else: a stream
/// that happens to live under its state prefix survives (the commit script
/// refuses a key that is not a string), and the entry is dead-lettered
/// saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_delete_never_deletes_a_stream() {
    let _serial = serial().await;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    produce(&mut conn, "state:probe:victim", 1, plain).await;
    produce(&mut conn, HOSTILE_STREAM, 1, |_| {
        vec![
            ("op".to_owned(), b"delete".to_vec()),
            ("target".to_owned(), b"victim".to_vec()),
        ]
    })
    .await;
    let mut p = plugin("probe", artifacts::EFFECTS_PROBE, HOSTILE_STREAM);
    p.retry.max_attempts = 1;
    let host = InProcessHost::start(config(&redis.url(), vec![p])).await;
    let m = host.metrics("probe", HOSTILE_STREAM);
    let done = wait_until(WAIT, || async { m.dead_lettered.get() >= 1 }).await;
    host.stop().await;
    assert!(done, "the entry was not dead-lettered");
    assert_eq!(
        xlen(&mut conn, "state:probe:victim").await,
        1,
        "the stream survived"
    );
    let dlq = dlq_entries(&mut conn, &format!("dlq:{HOSTILE_STREAM}:probe")).await;
    assert!(dlq[0].1.contains("WRONGTYPE"), "{dlq:?}");
}

/// `log("")` a million times is bounded like one long line: every call costs
/// a fixed amount besides its bytes, and the budget running out is said once.
/// Printing to stdout goes to the same budget, sanitized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_log_lines_and_prints_are_bounded_by_the_log_budget() {
    let _serial = serial().await;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let modes = ["empty", "empty", "print"];
    produce(&mut conn, HOSTILE_STREAM, modes.len(), |i| {
        vec![("mode".to_owned(), modes[i].as_bytes().to_vec())]
    })
    .await;
    let limits = LimitsConfig {
        fuel: 10_000_000_000,
        timeout_ms: 20_000,
        ..LimitsConfig::default()
    };
    let flooder = hostile("log-flooder", artifacts::LOG_FLOODER, limits);
    let log_bytes = flooder.limits.log_bytes;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(&redis.url(), vec![flooder]);
    let mut host = HostProcess::spawn(dir.path(), "empty-lines", &cfg);
    let url = redis.url();
    let done = wait_until(WAIT, || {
        let url = url.clone();
        async move {
            let mut conn = connect(&url).await;
            consumed(&mut conn, HOSTILE_STREAM, "log-flooder").await == modes.len() as u64
                && pending_or_zero(&mut conn, HOSTILE_STREAM, "log-flooder").await == 0
        }
    })
    .await;
    host.signal("-TERM");
    assert_eq!(host.wait(Duration::from_secs(30)), Some(0), "clean exit");
    let text = host.log();
    assert!(done, "not everything was handled; log:\n{}", tail(&text));
    assert_eq!(
        xlen(&mut conn, &format!("dlq:{HOSTILE_STREAM}:log-flooder")).await,
        0
    );
    let guest_lines = text
        .lines()
        .filter(|l| l.contains("plugin") && l.contains("log-flooder"))
        .count();
    // Each call costs 64 bytes besides its own: at most log_bytes / 64 lines
    // per invocation (plus the host's own lines about the plugin).
    let bound = modes.len() * (log_bytes / 64 + 8);
    assert!(
        guest_lines < bound,
        "{guest_lines} lines, over {bound}:\n{}",
        tail(&text)
    );
    assert!(
        text.contains("printed line 0"),
        "print() reached the log:\n{}",
        tail(&text)
    );
    assert!(
        !text.contains("\x1b[31mRED"),
        "a printed escape reached the log"
    );
    assert_eq!(
        text.matches("exceeded its log budget").count(),
        modes.len(),
        "one budget warning per invocation:\n{}",
        tail(&text)
    );
}

/// In-process, where no log is written at all, the flood still costs only
/// the flooder: its entries are acked (the budget drops lines, it does not
/// fail the entry) and the validator's entries all go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flooder_beside_validator_is_acked() {
    let _serial = serial().await;
    let limits = LimitsConfig {
        fuel: 10_000_000_000,
        timeout_ms: 10_000,
        ..LimitsConfig::default()
    };
    let run = beside_validator(
        hostile("log-flooder", artifacts::LOG_FLOODER, limits),
        plain,
    )
    .await;
    assert!(run.dlq.is_empty(), "{:?}", run.dlq);
    assert_eq!(run.hostile.acked.get(), hostile_entries() as u64);
}

/// The baseline for the throughput figures: the validator beside a harmless
/// plugin (`echo`, which logs a line per entry and accepts it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validator_beside_a_harmless_plugin() {
    let _serial = serial().await;
    let run = beside_validator(hostile("echo", artifacts::ECHO, tight_limits()), plain).await;
    assert!(run.dlq.is_empty());
    assert_eq!(run.hostile.acked.get(), hostile_entries() as u64);
}

/// A trapped instance is never called again: after a panic, the next entry
/// is handled by a fresh instance, whose entry count starts again at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapped_instance_is_replaced_by_a_fresh_one() {
    let _serial = serial().await;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let modes = [
        "count", "count", "panic", "count", "count", "panic", "count",
    ];
    produce(&mut conn, HOSTILE_STREAM, modes.len(), |i| {
        vec![("mode".to_owned(), modes[i].as_bytes().to_vec())]
    })
    .await;
    let mut probe = hostile("instance-probe", artifacts::INSTANCE_PROBE, tight_limits());
    // One worker, instances reused: entries meet the same instance in order.
    probe.concurrency = 1;
    let host = InProcessHost::start(config(&redis.url(), vec![probe])).await;
    let m = host.metrics("instance-probe", HOSTILE_STREAM);
    let done = wait_until(WAIT, || async {
        m.dead_lettered.get() >= modes.len() as u64
    })
    .await;
    host.stop().await;
    assert!(
        done,
        "dead-lettered {} of {}",
        m.dead_lettered.get(),
        modes.len()
    );
    let seen: Vec<String> = dlq_entries(&mut conn, &format!("dlq:{HOSTILE_STREAM}:instance-probe"))
        .await
        .into_iter()
        .map(|(reason, error)| match reason.as_str() {
            "rejected" => error,
            _ => reason,
        })
        .collect();
    assert_eq!(
        seen,
        [
            "handled 1",
            "handled 2",
            "trap:trap",
            "handled 1",
            "handled 2",
            "trap:trap",
            "handled 1"
        ]
    );
    assert_eq!(m.trap(TrapKind::Panic).get(), 2);
}

/// The validator's entries/s over its last 90% of `n` entries (past start-up)
/// beside `neighbour`, which is fed `neighbour_entries` entries (none: it is
/// idle, the validator alone) and then must still be busy when the validator
/// is done. The neighbour is configured either way, so both runs pay the
/// same share bookkeeping and differ only in the neighbour's work.
async fn validator_rate(neighbour: PluginConfig, neighbour_entries: usize) -> f64 {
    let n: usize = env_count("STREAMHOST_FAIR_SHARE_ENTRIES", 100_000);
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    produce(&mut conn, VALIDATOR_STREAM, n, order).await;
    let mut validator = plugin(VALIDATOR, artifacts::ORDER_VALIDATOR, VALIDATOR_STREAM);
    // The plugin on the critical path gets 19 times the default weight: a
    // neighbour gets a twentieth of the CPU time while both have work. One
    // worker against the neighbour's two, whatever the machine.
    validator.cpu_weight = 1900;
    validator.concurrency = 1;
    if neighbour_entries > 0 {
        produce(&mut conn, HOSTILE_STREAM, neighbour_entries, plain).await;
    }
    let name = neighbour.name.clone();
    let host = InProcessHost::start(config(&redis.url(), vec![validator, neighbour])).await;
    let m = host.metrics(VALIDATOR, VALIDATOR_STREAM);
    let warm = (n / 10) as u64;
    assert!(wait_until(WAIT, || async { m.acked.get() >= warm }).await);
    let (started, from) = (Instant::now(), m.acked.get());
    assert!(
        wait_until(WAIT, || async { m.acked.get() >= n as u64 }).await,
        "validator acked {} of {n}",
        m.acked.get()
    );
    let rate = (n as u64 - from) as f64 / started.elapsed().as_secs_f64();
    if neighbour_entries > 0 {
        let h = host.metrics(&name, HOSTILE_STREAM);
        let done = h.acked.get() + h.dead_lettered.get();
        assert!(
            h.received.get() > 0 && done < neighbour_entries as u64,
            "{name} was not busy the whole run: {done} of {neighbour_entries} done"
        );
        let text = host.registry().encode();
        let throttled = sample(
            &text,
            "streamhost_cpu_throttled_seconds_total",
            &[("plugin", &name)],
        )
        .unwrap_or(0.0);
        println!("fair share: {name} done {done}, throttled {throttled:.2} s");
        assert!(throttled > 0.0, "{name} was never held back");
    }
    host.stop().await;
    rate
}

/// A fair share of CPU (`cpu_weight`): the validator (weight 1900) beside a
/// plugin busy the whole run with two workers (weight 100: fuel-burner,
/// memory-hog, echo) keeps at least 0.8 of its throughput alone (beside the
/// same plugin idle), median of
/// five alone/beside pairs each (the issue asks for three; five keeps a
/// 2-core machine's noise out of the verdict).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_neighbour_takes_no_more_than_its_cpu_share() {
    let _serial = serial().await;
    // Each call spins until its 10 ms wall-clock limit.
    let burner = LimitsConfig {
        fuel: 1_000_000_000_000,
        timeout_ms: 10,
        ..tight_limits()
    };
    let hog = LimitsConfig {
        fuel: 10_000_000_000,
        timeout_ms: 10_000,
        ..tight_limits()
    };
    let neighbours = [
        ("fuel-burner", artifacts::FUEL_BURNER, burner, 10_000),
        ("memory-hog", artifacts::MEMORY_HOG, hog, 20_000),
        ("echo", artifacts::ECHO, tight_limits(), 600_000),
    ];
    for (name, component, limits, entries) in neighbours {
        let mut ratios = Vec::new();
        let mut neighbour = hostile(name, component, limits.clone());
        neighbour.concurrency = 2;
        for _ in 0..5 {
            let alone = validator_rate(neighbour.clone(), 0).await;
            let beside = validator_rate(neighbour.clone(), entries).await;
            println!("fair share: validator {alone:.0}/s alone, {beside:.0}/s beside {name}");
            ratios.push(beside / alone);
        }
        ratios.sort_by(f64::total_cmp);
        let median = ratios[2];
        assert!(
            median >= 0.8,
            "beside {name} the validator keeps {median:.2} of its throughput alone ({ratios:?})"
        );
    }
}

/// An instance whose memory keeps growing from entry to entry (as reused
/// componentize-js instances' does) is replaced by a fresh one once it
/// passes `limits.recycle_memory_percent`, before it would trap for want of
/// memory: no entry fails for it. With recycling off, the same run traps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growing_instance_is_recycled_before_it_runs_out_of_memory() {
    let _serial = serial().await;
    let entries = 40;
    let run = |recycle_memory_percent: u32| async move {
        let redis = start_redis();
        let mut conn = connect(&redis.url()).await;
        produce(&mut conn, HOSTILE_STREAM, entries, |_| {
            vec![("leak_kib".to_owned(), b"512".to_vec())]
        })
        .await;
        let limits = LimitsConfig {
            memory_mib: 8,
            recycle_memory_percent,
            ..tight_limits()
        };
        let mut probe = hostile("instance-probe", artifacts::INSTANCE_PROBE, limits);
        probe.concurrency = 1;
        let host = InProcessHost::start(config(&redis.url(), vec![probe])).await;
        let m = host.metrics("instance-probe", HOSTILE_STREAM);
        let done = wait_until(WAIT, || async { m.dead_lettered.get() >= entries as u64 }).await;
        let recycled = sample(
            &host.registry().encode(),
            "streamhost_instances_recycled_total",
            &[("plugin", "instance-probe")],
        );
        host.stop().await;
        assert!(done, "dead-lettered {} of {entries}", m.dead_lettered.get());
        let seen = dlq_entries(&mut conn, &format!("dlq:{HOSTILE_STREAM}:instance-probe")).await;
        (seen, recycled, m.trap(TrapKind::Memory).get())
    };
    let (seen, recycled, memory_traps) = run(75).await;
    assert_eq!(memory_traps, 0, "{seen:?}");
    let most = seen
        .iter()
        .map(|(reason, error)| {
            assert_eq!(reason, "rejected", "{error}");
            let n = error.strip_prefix("handled ").expect("a count");
            n.parse::<u32>().expect("a number")
        })
        .max()
        .expect("entries");
    println!("recycling at 75%: at most {most} entries per instance, {recycled:?} recycled");
    // 8 MiB, 0.5 MiB more per entry: replaced after at most ~12 entries.
    assert!(
        (2..=12).contains(&most),
        "most entries one instance handled: {most}"
    );
    assert!(recycled >= Some(3.0), "recycled {recycled:?}");
    let (_, recycled, memory_traps) = run(100).await;
    println!("recycling off: {memory_traps} memory traps");
    assert_eq!(recycled, Some(0.0));
    assert!(
        memory_traps >= 1,
        "without recycling the instance runs out of memory"
    );
}

/// The log flooder writes 100,000 long lines full of terminal escapes and
/// forged log lines: the host keeps its log bounded (the per-invocation
/// budget) and free of control characters, and stays small in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flooder_is_truncated_and_sanitized() {
    let _serial = serial().await;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let floods = 10;
    let n = validator_entries();
    produce(&mut conn, VALIDATOR_STREAM, n, order).await;
    produce(&mut conn, HOSTILE_STREAM, floods, plain).await;
    // Generous time and fuel: the point is the log, not a timeout.
    let limits = LimitsConfig {
        fuel: 10_000_000_000,
        timeout_ms: 10_000,
        ..LimitsConfig::default()
    };
    let flooder = hostile("log-flooder", artifacts::LOG_FLOODER, limits);
    let log_bytes = flooder.limits.log_bytes;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &redis.url(),
        vec![
            plugin(VALIDATOR, artifacts::ORDER_VALIDATOR, VALIDATOR_STREAM),
            flooder,
        ],
    );
    let mut host = HostProcess::spawn(dir.path(), "flood", &cfg);
    let pid = host.child.id().to_string();
    let url = redis.url();
    let done = wait_until(WAIT, || {
        let url = url.clone();
        async move {
            let mut conn = connect(&url).await;
            pending_or_zero(&mut conn, VALIDATOR_STREAM, VALIDATOR).await == 0
                && pending_or_zero(&mut conn, HOSTILE_STREAM, "log-flooder").await == 0
                && consumed(&mut conn, VALIDATOR_STREAM, VALIDATOR).await == n as u64
                && consumed(&mut conn, HOSTILE_STREAM, "log-flooder").await == floods as u64
        }
    })
    .await;
    let rss = rss_kib(&pid);
    assert_eq!(host.wait(Duration::ZERO), None, "the host is still running");
    host.signal("-TERM");
    assert_eq!(host.wait(Duration::from_secs(30)), Some(0), "clean exit");
    let log = std::fs::read(&host.log).expect("read host log");
    let text = String::from_utf8_lossy(&log);
    assert!(done, "not everything was handled; log:\n{}", tail(&text));
    assert_eq!(
        xlen(&mut conn, &format!("dlq:{HOSTILE_STREAM}:log-flooder")).await,
        0,
        "log-flooder's entries were acked"
    );
    assert_eq!(
        xlen(&mut conn, &format!("dlq:{VALIDATOR_STREAM}:{VALIDATOR}")).await,
        0
    );
    println!(
        "sandbox: log-flooder: host log {} bytes, host RSS {rss} KiB",
        log.len()
    );
    // The guest tried to write 100,000 x 3 KiB per entry; each invocation may
    // log `log_bytes` (a replaced control character takes 3 bytes in UTF-8).
    let bound = floods * (3 * log_bytes + 4096) + 64 * 1024;
    assert!(
        log.len() < bound,
        "host log is {} bytes, over {bound}",
        log.len()
    );
    // The host's own log format may colour its output; the guest's escapes
    // (colour, clear screen, window title, BEL, CR) must not get through.
    for escape in ["\x1b[31mRED", "\x1b[2J", "\x1b]0;pwned", "\x07", "\r"] {
        assert!(
            !text.contains(escape),
            "{escape:?} from the guest reached the host log"
        );
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("INFO streamhost: forged")),
        "the guest forged a log line"
    );
    assert!(
        text.contains("forged line"),
        "some of the flood was logged (sanitized):\n{}",
        tail(&text)
    );
    assert_eq!(
        text.matches("exceeded its log budget").count(),
        floods,
        "one truncation warning per invocation"
    );
    assert!(rss < 512 * 1024, "host RSS {rss} KiB");
}

/// Like [`pending`], but 0 while the group does not exist yet.
async fn pending_or_zero(conn: &mut MultiplexedConnection, stream: &str, group: &str) -> u64 {
    let exists = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async::<Vec<redis::Value>>(conn)
        .await
        .is_ok_and(|groups| !groups.is_empty());
    if exists {
        pending(conn, stream, group).await
    } else {
        0
    }
}

/// Entries delivered to a group so far (`entries-read` of `XINFO GROUPS`).
async fn consumed(conn: &mut MultiplexedConnection, stream: &str, group: &str) -> u64 {
    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await
        .unwrap_or_default();
    for g in groups {
        let fields: Vec<redis::Value> = match g {
            redis::Value::Array(items) => items,
            redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            _ => continue,
        };
        let text = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            redis::Value::SimpleString(s) => s.clone(),
            _ => String::new(),
        };
        let mut name = String::new();
        let mut read = 0;
        for pair in fields.chunks(2) {
            match (text(&pair[0]).as_str(), &pair[1]) {
                ("name", v) => name = text(v),
                ("entries-read", redis::Value::Int(n)) => read = *n as u64,
                _ => {}
            }
        }
        if name == group {
            return read;
        }
    }
    0
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(4000);
    let mut start = start;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

// ---- bad components at load ----

/// `Host::load` with these plugins; the error text.
async fn load_error(plugins: Vec<PluginConfig>) -> String {
    let cfg = Config {
        plugins,
        ..Config::default()
    };
    match streamhost::Host::load(cfg).await {
        Ok(_) => panic!("the host loaded a bad component"),
        Err(e) => e.to_string(),
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write component");
    path.to_str().expect("utf-8 path").to_owned()
}

/// Bytes that are neither Wasm nor anything else.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Each kind of bad component is refused with an error naming the plugin and the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_refused_at_load() {
    let _serial = serial().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let big = write(dir.path(), "big.wasm", &random_bytes(2 << 20));
    let mut too_big = plugin("too-big", &big, "s");
    too_big.limits.max_component_mib = 1;
    let random = write(dir.path(), "random.wasm", &random_bytes(4096));
    // The smallest valid core module: magic and version 1, no sections.
    let core = write(dir.path(), "core.wasm", b"\0asm\x01\0\0\0");
    let start_traps = write(dir.path(), "start-traps.wasm", &start_trapping_component());
    let http = write(
        dir.path(),
        "http.wasm",
        &synth::importing(&[
            "wasi:http/types@0.2.10",
            "wasi:http/outgoing-handler@0.2.10",
        ]),
    );
    let bomb = write(dir.path(), "bomb.wasm", &synth::empty_functions(200_000));
    // A module declaring 4 MiB of initial memory, under a 1 MiB limit.
    let mut tight_memory = plugin(
        "tight-memory",
        &write(dir.path(), "big-memory.wasm", &synth::memory_pages(64)),
        "s",
    );
    tight_memory.limits.memory_mib = 1;
    let cases: Vec<(PluginConfig, &[&str])> = vec![
        (too_big, &["over the limit", "max_component_mib"]),
        (
            plugin("random", &random, "s"),
            &["not a Wasm component", "not WebAssembly"],
        ),
        (
            plugin("core", &core, "s"),
            &["core Wasm module", "wasm32-wasip2"],
        ),
        (
            plugin("wrong-world", artifacts::WRONG_WORLD, "s"),
            &["handler", "handle"],
        ),
        (
            plugin("http-client", &http, "s"),
            &[
                "2 interface(s)",
                "wasi:http/types@0.2.10",
                "wasi:http/outgoing-handler@0.2.10",
            ],
        ),
        (
            plugin("bomb", &bomb, "s"),
            &[
                "200000 functions",
                "limits.max_functions",
                "before compiling",
            ],
        ),
        (
            plugin("zero", "/dev/zero", "s"),
            &["/dev/zero", "character device"],
        ),
        (
            tight_memory,
            &["MiB of initial linear memory", "limits.memory_mib"],
        ),
        (
            plugin("start-traps", &start_traps, "s"),
            &["instantiation failed", "unreachable"],
        ),
    ];
    for (p, needles) in cases {
        let name = p.name.clone();
        let err = load_error(vec![p]).await;
        println!("sandbox: {name}: {err}");
        assert!(
            err.contains(&format!("plugin {name:?}")),
            "error names the plugin: {err}"
        );
        for needle in needles {
            assert!(
                err.contains(needle),
                "{name}: error mentions {needle:?}: {err}"
            );
        }
    }
}

/// One bad plugin among good ones: loading fails and names the bad one (the
/// host refuses to start rather than run with part of its config).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_plugin_among_good_ones_is_named() {
    let _serial = serial().await;
    let err = load_error(vec![
        plugin(VALIDATOR, artifacts::ORDER_VALIDATOR, "a"),
        plugin("the-bad-one", artifacts::WRONG_WORLD, "b"),
        plugin("echo", artifacts::ECHO, "c"),
    ])
    .await;
    assert!(err.contains("plugin \"the-bad-one\""), "{err}");
    assert!(
        !err.contains(VALIDATOR) && !err.contains("\"echo\""),
        "{err}"
    );
}

/// `streamhost run` with a bad plugin exits with 2 and names it, before consuming anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_to_start_with_a_bad_plugin() {
    let _serial = serial().await;
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    produce(&mut conn, "a", 10, order).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(
        &redis.url(),
        vec![
            plugin(VALIDATOR, artifacts::ORDER_VALIDATOR, "a"),
            plugin("wrong", artifacts::WRONG_WORLD, "b"),
        ],
    );
    let mut host = HostProcess::spawn(dir.path(), "bad", &cfg);
    assert_eq!(
        host.wait(Duration::from_secs(60)),
        Some(2),
        "log:\n{}",
        host.log()
    );
    let log = host.log();
    assert!(
        log.contains("plugin \"wrong\"") && log.contains("`handle`"),
        "{log}"
    );
    assert_eq!(
        consumed(&mut conn, "a", VALIDATOR).await,
        0,
        "nothing was consumed"
    );
}

/// A real handler component (`echo`) whose main core module gets a start
/// function that executes `unreachable`: valid, right world, but instantiation traps.
fn start_trapping_component() -> Vec<u8> {
    let component = std::fs::read(artifacts::ECHO).expect("read echo component");
    component_surgery::add_trapping_start(&component)
}

mod component_surgery {
    //! Just enough of the Wasm binary format to splice a start function into
    //! the largest core module of a component (its main module).

    /// Reads an unsigned LEB128 at `*pos`, advancing it.
    pub fn leb(bytes: &[u8], pos: &mut usize) -> u64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let b = bytes[*pos];
            *pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return value;
            }
            shift += 7;
        }
    }

    pub fn put_leb(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let b = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// `(id, payload range)` of each section after the 8-byte header.
    pub fn sections(bytes: &[u8]) -> Vec<(u8, std::ops::Range<usize>)> {
        let mut pos = 8;
        let mut out = Vec::new();
        while pos < bytes.len() {
            let id = bytes[pos];
            pos += 1;
            let len = leb(bytes, &mut pos) as usize;
            out.push((id, pos..pos + len));
            pos += len;
        }
        out
    }

    fn section(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
        out.push(id);
        put_leb(out, payload.len() as u64);
        out.extend_from_slice(payload);
    }

    /// Component: replace the largest core module section (id 1) with a trapping-start copy.
    pub fn add_trapping_start(component: &[u8]) -> Vec<u8> {
        let secs = sections(component);
        let main = secs
            .iter()
            .filter(|(id, _)| *id == 1)
            .max_by_key(|(_, r)| r.len())
            .expect("a component has a core module")
            .1
            .clone();
        let mut out = component[..8].to_vec();
        for (id, range) in secs {
            if range == main {
                section(&mut out, 1, &module_with_trapping_start(&component[range]));
            } else {
                section(&mut out, id, &component[range]);
            }
        }
        out
    }

    /// Core module: append type `[] -> []`, a function of that type whose body
    /// is `unreachable`, and a start section naming it.
    fn module_with_trapping_start(module: &[u8]) -> Vec<u8> {
        let secs = sections(module);
        assert!(
            secs.iter().all(|(id, _)| *id != 8),
            "module already has a start function"
        );
        let count = |id: u8| {
            secs.iter()
                .find(|(i, _)| *i == id)
                .map(|(_, r)| leb(module, &mut r.start.clone()))
                .unwrap_or(0)
        };
        let types = count(1);
        let defined = count(3);
        let imported_funcs = imported_functions(module, &secs);
        let new_func = imported_funcs + defined;
        let mut out = module[..8].to_vec();
        for (id, range) in &secs {
            let payload = &module[range.clone()];
            // Start (8) goes after export (7) and before element (9) / code (10) / data count (12).
            if (9..=12).contains(id) && !out_has_start(&out) {
                push_start(&mut out, new_func);
            }
            match id {
                1 => section(&mut out, 1, &append_entry(payload, &[0x60, 0x00, 0x00])),
                3 => section(&mut out, 3, &append_entry(payload, &leb_bytes(types))),
                10 => section(
                    &mut out,
                    10,
                    &append_entry(payload, &[0x03, 0x00, 0x00, 0x0b]),
                ),
                _ => section(&mut out, *id, payload),
            }
        }
        out
    }

    fn out_has_start(out: &[u8]) -> bool {
        sections(out).iter().any(|(id, _)| *id == 8)
    }

    fn push_start(out: &mut Vec<u8>, func: u64) {
        section(out, 8, &leb_bytes(func));
    }

    fn leb_bytes(value: u64) -> Vec<u8> {
        let mut v = Vec::new();
        put_leb(&mut v, value);
        v
    }

    /// A vector section with one more entry appended.
    fn append_entry(payload: &[u8], entry: &[u8]) -> Vec<u8> {
        let mut pos = 0;
        let n = leb(payload, &mut pos);
        let mut out = leb_bytes(n + 1);
        out.extend_from_slice(&payload[pos..]);
        out.extend_from_slice(entry);
        out
    }

    /// Functions among the imports (section 2).
    fn imported_functions(module: &[u8], secs: &[(u8, std::ops::Range<usize>)]) -> u64 {
        let Some((_, range)) = secs.iter().find(|(id, _)| *id == 2) else {
            return 0;
        };
        let mut pos = range.start;
        let n = leb(module, &mut pos);
        let mut funcs = 0;
        for _ in 0..n {
            for _ in 0..2 {
                let len = leb(module, &mut pos) as usize;
                pos += len;
            }
            let kind = module[pos];
            pos += 1;
            match kind {
                0x00 => {
                    funcs += 1;
                    leb(module, &mut pos);
                }
                0x01 => {
                    pos += 1; // reftype
                    skip_limits(module, &mut pos);
                }
                0x02 => skip_limits(module, &mut pos),
                0x03 => pos += 2, // valtype (numeric or short reftype), mutability
                0x04 => {
                    pos += 1; // attribute
                    leb(module, &mut pos);
                }
                other => panic!("import kind {other:#x} not supported by this test helper"),
            }
        }
        funcs
    }

    fn skip_limits(module: &[u8], pos: &mut usize) {
        let flags = module[*pos];
        *pos += 1;
        leb(module, pos);
        if flags & 0x01 != 0 {
            leb(module, pos);
        }
    }
}
