//! The web dashboard end to end, in headless Debian chromium driven by
//! playwright-core (`tests/dashboard/drive.mjs`), against a real host and a
//! private Redis: the overview's counts, a rejected entry on the dead-letter
//! and message pages, replay from the page reaching Redis and the plugin,
//! pause stopping consumption on the host, and actions without the token
//! refused. Saves a screenshot of each screen into the test's temporary
//! directory, or into `$STREAMHOST_SCREENSHOTS` (relative to the repository
//! root) when set: `STREAMHOST_SCREENSHOTS=docs/dashboard` refreshes the
//! screenshots the docs show.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use streamhost_tests::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TOKEN: &str = "dashboard-test-token-0123456789";
const PLUGIN: &str = "orders";
const STREAM: &str = "dash:orders";
const CHROMIUM: &str = "/usr/bin/chromium";

fn driver_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard")
}

/// Fails (never skips) with install advice when the browser stack is missing.
fn require_browser() {
    let advice = "install it the way .ci/run does: `apt-get install -y chromium nodejs npm` \
                  and `npm ci` in tests/dashboard (no browser download is needed or made)";
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {advice}"
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "`node` is missing: {advice}"
    );
    assert!(
        driver_dir().join("node_modules/playwright-core").is_dir(),
        "tests/dashboard/node_modules/playwright-core is missing: {advice}"
    );
}

/// The driver process and its step lines.
struct Driver {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stdin: tokio::process::ChildStdin,
}

impl Driver {
    fn spawn(url: &str, shots: &Path) -> Driver {
        let mut child = tokio::process::Command::new("node")
            .arg(driver_dir().join("drive.mjs"))
            .current_dir(driver_dir())
            .env("DASH_URL", url)
            .env("DASH_TOKEN", TOKEN)
            .env("DASH_PLUGIN", PLUGIN)
            .env("SCREENSHOTS", shots)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        Driver {
            child,
            lines: BufReader::new(stdout).lines(),
            stdin,
        }
    }

    /// The next step the browser reached, with what it saw.
    async fn expect(&mut self, step: &str) -> Value {
        loop {
            let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("browser did not reach step {step:?} within 90 s"))
                .expect("read driver output")
                .unwrap_or_else(|| {
                    panic!("browser driver exited before step {step:?} (see its stderr above)")
                });
            let Some(rest) = line.strip_prefix("@@ ") else {
                eprintln!("driver: {line}");
                continue;
            };
            let (name, json) = rest.split_once(' ').unwrap_or((rest, "{}"));
            assert_eq!(name, step, "browser reached another step: {line}");
            return serde_json::from_str(json).expect("step data is JSON");
        }
    }

    async fn go_on(&mut self) {
        self.stdin
            .write_all(b"ok\n")
            .await
            .expect("write to driver");
        self.stdin.flush().await.expect("flush");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_chromium() {
    require_browser();
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    // Five good orders and one the validator rejects, with a terminal escape
    // and binary bytes for the message page to neutralise.
    produce(&mut conn, STREAM, 5, order).await;
    produce(&mut conn, STREAM, 1, |_| {
        vec![
            (
                "data".to_owned(),
                br#"{"order_id":"seven","amount_cents":5}"#.to_vec(),
            ),
            ("note".to_owned(), b"\x1b[31mred\x1b[0m".to_vec()),
            ("blob".to_owned(), vec![0xff, 0x00, 0xfe, 0x01]),
        ]
    })
    .await;
    let host = AdminHost::start(
        config(
            &redis.url(),
            vec![plugin(PLUGIN, artifacts::ORDER_VALIDATOR, STREAM)],
        ),
        Some(TOKEN),
    )
    .await;
    let m = host.metrics.plugin(PLUGIN, STREAM);
    let dlq = streamhost::dlq::dlq_key(STREAM, PLUGIN);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let (m, dlq, mut conn) = (m.clone(), dlq.clone(), conn.clone());
            async move { m.acked.get() == 5 && xlen(&mut conn, &dlq).await == 1 }
        })
        .await,
        "host did not settle: acked {}",
        m.acked.get()
    );
    // Version 1 is the validator; version 2, the "fixed" handler (echo
    // accepts everything), is what the replayed entry will reach.
    let validator = std::fs::read(artifacts::ORDER_VALIDATOR).expect("artifact");
    let echo = std::fs::read(artifacts::ECHO).expect("artifact");
    streamhost::deploy::deploy(&mut conn, PLUGIN, &validator, "test")
        .await
        .expect("deploy v1");
    streamhost::deploy::deploy(&mut conn, PLUGIN, &echo, "test")
        .await
        .expect("deploy v2");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let m = m.clone();
            async move { m.swaps.get() == 1 }
        })
        .await,
        "host did not swap to version 2"
    );

    // Without the token, an action is refused outside the browser too.
    let refused = http(
        host.addr,
        "POST",
        &format!("/api/plugins/{PLUGIN}/pause"),
        &[],
        "{}",
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    let forged = http(
        host.addr,
        "POST",
        &format!("/api/plugins/{PLUGIN}/pause"),
        &[
            ("Authorization", &format!("Bearer {TOKEN}")),
            ("Origin", "http://evil.example"),
        ],
        "{}",
    )
    .await;
    assert_eq!(forged.status, 403, "cross-origin refused: {}", forged.body);

    let scratch = tempfile::tempdir().expect("temporary directory");
    let shots = screenshot_dir(scratch.path());
    let mut driver = Driver::spawn(&format!("http://{}", host.addr), &shots);

    let seen = driver.expect("overview").await;
    assert_eq!(seen["acked"], "5", "{seen}");
    assert_eq!(seen["dlq"], "1", "{seen}");
    assert_eq!(seen["lag"], "0", "{seen}");
    assert_eq!(seen["pending"], "0", "{seen}");
    assert!(
        seen["failures"].as_str().unwrap().contains("rejected 1"),
        "{seen}"
    );
    assert_eq!(seen["charts"], 1, "{seen}");
    assert!(
        seen["host"].as_str().unwrap().contains("orders-test"),
        "names this host's consumer: {seen}"
    );
    driver.go_on().await;

    let seen = driver.expect("refused").await;
    assert_eq!(
        seen["disabled"], true,
        "pause button disabled before sign-in: {seen}"
    );
    assert_eq!(seen["status"], 401, "{seen}");
    assert_eq!(xlen(&mut conn, &dlq).await, 1);
    let paused: bool = redis::cmd("EXISTS")
        .arg(streamhost::pause::key(PLUGIN))
        .query_async(&mut conn)
        .await
        .expect("EXISTS");
    assert!(!paused, "the refused pause changed nothing");
    driver.go_on().await;

    let seen = driver.expect("dlq").await;
    assert_eq!(seen["letters"], 1, "{seen}");
    assert_eq!(seen["reason"], "rejected", "{seen}");
    assert!(seen["total"].as_str().unwrap().starts_with("1 "), "{seen}");
    driver.go_on().await;

    let seen = driver.expect("message").await;
    let field = |name: &str| {
        seen["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no field {name}: {seen}"))
    };
    assert_eq!(field("data")["kind"], "json");
    assert!(
        field("data")["value"]
            .as_str()
            .unwrap()
            .contains("\n  \"order_id\": \"seven\""),
        "{seen}"
    );
    assert_eq!(field("note")["kind"], "text");
    assert_eq!(
        field("note")["value"],
        "\\u{1b}[31mred\\u{1b}[0m",
        "escape neutralised: {seen}"
    );
    assert_eq!(field("blob")["kind"], "hex");
    assert_eq!(field("blob")["value"], "00000000  ff 00 fe 01");
    driver.go_on().await;

    let seen = driver.expect("signed-in").await;
    assert_eq!(seen["user"], "ops-test");
    driver.go_on().await;

    let seen = driver.expect("replayed").await;
    assert!(
        seen["status"].as_str().unwrap().contains("Replayed 1"),
        "{seen}"
    );
    assert_eq!(
        xlen(&mut conn, &dlq).await,
        0,
        "replayed entry left the DLQ"
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            let m = m.clone();
            async move { m.acked.get() == 6 }
        })
        .await,
        "the replayed entry did not reach the plugin: acked {}",
        m.acked.get()
    );
    driver.go_on().await;

    let _ = driver.expect("paused").await;
    let record = streamhost::pause::status(&mut conn, PLUGIN)
        .await
        .expect("pause status")
        .expect("paused in Redis");
    assert!(
        record.by.starts_with("ops-test from 127.0.0.1"),
        "{record:?}"
    );
    // The reader notices at its next read (block_ms = 100 here).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    produce(&mut conn, STREAM, 3, order).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(m.acked.get(), 6, "a paused plugin consumed entries");
    let group = streamhost::inspect::group(&mut conn, STREAM, PLUGIN)
        .await
        .expect("XINFO")
        .expect("group");
    assert_eq!(group.lag, Some(3), "nothing was even read: {group:?}");
    driver.go_on().await;

    let _ = driver.expect("resumed").await;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let m = m.clone();
            async move { m.acked.get() == 9 }
        })
        .await,
        "resumed plugin did not consume: acked {}",
        m.acked.get()
    );
    driver.go_on().await;

    let seen = driver.expect("final").await;
    assert_eq!(seen["acked"], "9", "{seen}");
    driver.go_on().await;

    let status = tokio::time::timeout(Duration::from_secs(30), driver.child.wait())
        .await
        .expect("driver exits")
        .expect("driver status");
    assert!(status.success(), "driver failed: {status}");
    for shot in [
        "overview",
        "dead-letters",
        "message",
        "plugin",
        "plugin-paused",
    ] {
        assert!(
            shots.join(format!("{shot}.png")).is_file(),
            "screenshot {shot} saved"
        );
    }
    host.stop().await;
}

/// Where screenshots go: `$STREAMHOST_SCREENSHOTS` (relative paths from the
/// repository root) when set, so a plain test run leaves the tree as it was;
/// otherwise `scratch`.
fn screenshot_dir(scratch: &Path) -> PathBuf {
    let Some(asked) = std::env::var_os("STREAMHOST_SCREENSHOTS").filter(|v| !v.is_empty()) else {
        return scratch.to_owned();
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(asked);
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}
