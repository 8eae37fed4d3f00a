//! End-to-end tests for streamhost: a real redis-server and real compiled components.
//!
//! One-line setup for a test: [`TestRedis::start`] for a private server,
//! [`plugin`] for a test-friendly plugin table, [`InProcessHost::start`] to run
//! a host inside the test, or [`HostProcess::spawn`] for a real process that
//! can be killed.

pub mod ledger;
pub mod synth;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use streamhost::config::{ClaimConfig, Config, PluginConfig, RedisConfig, RetryConfig};
use streamhost::{Metrics, PluginMetrics};
use tokio_util::sync::CancellationToken;

pub use streamhost::local_cluster::LocalCluster as TestCluster;
pub use streamhost::local_redis::{LocalRedis as TestRedis, Server};

/// Paths of the plugin components, freshly built by `build.rs`.
pub mod artifacts {
    include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
}

/// The Python and JavaScript test guests, componentized by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// A test guest: its component, or why it could not be built.
#[derive(Debug, Clone, Copy)]
pub struct Guest {
    /// `<lang>/<name>` under `tests/guests/`.
    pub name: &'static str,
    /// The component path, or the build error (with install advice when a
    /// toolchain is missing).
    pub built: Result<&'static str, &'static str>,
}

impl Guest {
    /// The component path; fails the test when the guest was not built (a
    /// missing toolchain fails, it does not skip).
    pub fn path(&self) -> &'static str {
        match self.built {
            Ok(path) => path,
            Err(e) => panic!(
                "test guest {} was not built (touch tests/build.rs after fixing, or run .ci/run): {e}",
                self.name
            ),
        }
    }
}

/// Starts a private server, failing the test with install advice when it is
/// missing: `redis-server`, or Valkey with `STREAMHOST_TEST_SERVER=valkey`
/// (how `.ci/run` runs the stream tests that matter most against Valkey too).
pub fn start_redis() -> TestRedis {
    Server::from_env()
        .and_then(|server| TestRedis::start_server(server, &[]))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Starts a private Redis Cluster (3 masters, 3 replicas), failing the test
/// with install advice when `redis-server` or `redis-cli` is missing.
pub fn start_cluster() -> TestCluster {
    TestCluster::start().unwrap_or_else(|e| panic!("{e}"))
}

/// A config for a Redis Cluster reached through `seeds`, and some plugins.
pub fn cluster_config(seeds: &[String], plugins: Vec<PluginConfig>) -> Config {
    Config {
        redis: RedisConfig {
            cluster: true,
            urls: seeds.to_vec(),
            ..RedisConfig::default()
        },
        plugins,
        ..Config::default()
    }
}

/// A cluster client connection (routes by key, follows redirects).
pub async fn connect_cluster(seeds: &[String]) -> streamhost::connection::Conn {
    streamhost::connection::Endpoint::cluster(seeds)
        .connect_once(Duration::from_secs(10))
        .await
        .expect("connect to the test cluster")
}

/// Starts a private Valkey server, failing the test with install advice when it is missing.
pub fn start_valkey() -> TestRedis {
    TestRedis::start_valkey().unwrap_or_else(|e| panic!("{e}"))
}

/// A plugin table with short timings for tests: fast blocking reads, quick
/// claims, short backoff.
pub fn plugin(name: &str, component: &str, stream: &str) -> PluginConfig {
    PluginConfig {
        consumer: Some(format!("{name}-test")),
        batch: 128,
        block_ms: 100,
        retry: RetryConfig {
            initial_ms: 20,
            max_ms: 200,
            ..RetryConfig::default()
        },
        claim: ClaimConfig {
            min_idle_ms: 1_000,
            interval_ms: 200,
            ..ClaimConfig::default()
        },
        ..PluginConfig::new(name, component, stream)
    }
}

/// A config for one Redis and some plugins.
pub fn config(url: &str, plugins: Vec<PluginConfig>) -> Config {
    Config {
        redis: RedisConfig {
            url: url.to_owned(),
            ..RedisConfig::default()
        },
        plugins,
        ..Config::default()
    }
}

/// A host running inside the test process.
pub struct InProcessHost {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<streamhost::Result<()>>,
    metrics: std::sync::Arc<Metrics>,
}

impl InProcessHost {
    /// Loads the plugins and starts consuming.
    pub async fn start(config: Config) -> InProcessHost {
        let host = streamhost::Host::load(config).await.expect("host loads");
        let metrics = host.metrics();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(host.run(shutdown.clone()));
        InProcessHost {
            shutdown,
            task,
            metrics,
        }
    }

    /// Metric handles of one plugin.
    pub fn metrics(&self, plugin: &str, stream: &str) -> PluginMetrics {
        self.metrics.plugin(plugin, stream)
    }

    /// The whole registry (for the Prometheus text).
    pub fn registry(&self) -> std::sync::Arc<Metrics> {
        self.metrics.clone()
    }

    /// Graceful shutdown: drain and wait.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("host task")
            .expect("host ran cleanly");
    }
}

/// A `streamhost run` process (the real binary), killed on drop.
pub struct HostProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl HostProcess {
    /// Writes `config` to a file in `dir` and runs the binary on it.
    pub fn spawn(dir: &Path, name: &str, config: &Config) -> HostProcess {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml::to_string(config).expect("config serializes"))
            .expect("write config");
        let log = dir.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).expect("create log");
        let child = Command::new(streamhost_bin())
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log"))
            .stderr(log_file)
            .spawn()
            .expect("spawn streamhost");
        HostProcess { child, log }
    }

    /// Sends a signal (`"-KILL"`, `"-TERM"`, `"-STOP"`, `"-CONT"`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for exit, returning the exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process's log so far.
    pub fn log(&self) -> String {
        // Lossy: a line cut mid-character by a write in progress must not
        // make the whole log read as empty.
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// The last 30 lines of the log, for assertion messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `streamhost` command line built for tests (`src/bin/streamhost-e2e.rs`).
/// Stops `host` with SIGTERM and fails the test unless it exits 0 within 20 s.
pub fn terminate(host: &mut HostProcess) {
    host.signal("-TERM");
    assert_eq!(
        host.wait(Duration::from_secs(20)),
        Some(0),
        "exit after SIGTERM:\n{}",
        host.log_tail()
    );
}

/// Every entry of stream `out` (written by the marker plugins) as source id
/// -> the versions that handled it, in order.
pub async fn outputs(conn: &mut MultiplexedConnection) -> HashMap<String, Vec<String>> {
    let mut by_source: HashMap<String, Vec<String>> = HashMap::new();
    let mut from = "-".to_owned();
    loop {
        let page: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg("out")
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(5000)
            .query_async(conn)
            .await
            .expect("XRANGE out");
        let Some((last, _)) = page.last() else { break };
        from = format!("({last}");
        for (_, f) in page {
            by_source
                .entry(f["source_id"].clone())
                .or_default()
                .push(f["version"].clone());
        }
    }
    by_source
}

/// Runs the `streamhost` binary with `args`, without a `REDIS_URL` from the
/// environment (every test names its own server).
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new(streamhost_bin())
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost")
}

/// Command output as text, for messages and `contains` checks (lossy: only
/// ever shown, never compared byte for byte).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails the test with the command's status, stdout and stderr unless it succeeded.
pub fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Cargo builds a package's binaries before its integration tests and puts
/// them one level above the test executables (`target/<profile>/deps/..`).
pub fn streamhost_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let bin = dir.join("streamhost-e2e");
    assert!(
        bin.exists(),
        "{} is missing: run the tests through cargo test",
        bin.display()
    );
    bin
}

/// An async connection to `url`.
pub async fn connect(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to test redis")
}

/// Appends `n` entries made by `fields(i)`; returns their ids in order.
pub async fn produce(
    conn: &mut MultiplexedConnection,
    stream: &str,
    n: usize,
    fields: impl Fn(usize) -> Vec<(String, Vec<u8>)>,
) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(1000) {
        let mut pipe = redis::pipe();
        for i in start..(start + 1000).min(n) {
            pipe.cmd("XADD").arg(stream).arg("*").arg(fields(i));
        }
        let batch: Vec<String> = pipe.query_async(conn).await.expect("XADD");
        ids.extend(batch);
    }
    ids
}

/// Fields with string names as stored: names and values as bytes (how
/// [`streamhost::dlq::DeadLetter`] holds them).
pub fn raw(fields: &[(String, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    fields
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.clone()))
        .collect()
}

/// A valid order for `order-validator`.
pub fn order(i: usize) -> Vec<(String, Vec<u8>)> {
    vec![(
        "data".to_owned(),
        format!(r#"{{"order_id":{i},"amount_cents":{}}}"#, 100 + i).into_bytes(),
    )]
}

/// Pending entries in a group (XPENDING summary count).
pub async fn pending(conn: &mut MultiplexedConnection, stream: &str, group: &str) -> u64 {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .expect("XPENDING");
    match summary {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            _ => 0,
        },
        _ => 0,
    }
}

/// Length of a stream.
pub async fn xlen(conn: &mut MultiplexedConnection, stream: &str) -> u64 {
    redis::cmd("XLEN")
        .arg(stream)
        .query_async(conn)
        .await
        .expect("XLEN")
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it did.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The value of the first sample `name{labels...}` in Prometheus text.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A response read by [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The head, lower-cased, for `contains` checks.
    pub headers: String,
    /// The body as text.
    pub body: String,
}

/// One plain HTTP/1.1 request (`Connection: close`); no client dependency.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to admin endpoint");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    HttpResponse {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code"),
        headers: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// A host with its admin endpoint (and dashboard) on a free loopback port.
pub struct AdminHost {
    /// Where the admin endpoint listens.
    pub addr: std::net::SocketAddr,
    /// The host's metrics.
    pub metrics: std::sync::Arc<Metrics>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<streamhost::Result<()>>,
}

impl AdminHost {
    /// Loads and runs `config` with `[admin]` on port 0 (gauges every 100 ms).
    pub async fn start(mut config: Config, token: Option<&str>) -> AdminHost {
        config.admin = Some(streamhost::config::AdminConfig {
            listen: "127.0.0.1:0".to_owned(),
            refresh_ms: 100,
            token: token.map(|t| streamhost::config::Secret(t.to_owned())),
        });
        let listener = streamhost::AdminListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin");
        let addr = listener.addr();
        let host = streamhost::Host::load(config).await.expect("host loads");
        let metrics = host.metrics();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(host.run_with_admin(Some(listener), shutdown.clone()));
        AdminHost {
            addr,
            metrics,
            shutdown,
            task,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> HttpResponse {
        http(self.addr, "GET", path, &[], "").await
    }

    /// Stops the host and checks it ran cleanly.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("host task")
            .expect("host ran cleanly");
    }
}

/// Every entry of a stream, names and values byte for byte (`XRANGE - +`
/// through the host's own entry parser).
pub async fn raw_entries(
    conn: &mut MultiplexedConnection,
    stream: &str,
) -> Vec<streamhost::entry::Entry> {
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
        .map(|i| streamhost::entry::parse_entry(i, 1).expect("entry"))
        .collect()
}
