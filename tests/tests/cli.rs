//! The command line as an operator meets it: colour only on a terminal, flat
//! JSON logs, `--version`, `check` rejecting what `run` would, `deploy` and
//! `rollback` that do not surprise, `status --watch`, a twin consumer name
//! warned about, and a Redis outage logged in a few lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use streamhost_tests::*;

/// The e2e binary with `args`, no `REDIS_URL`, colour left to `auto`.
fn streamhost(args: &[&str]) -> Command {
    let mut cmd = Command::new(streamhost_bin());
    cmd.args(args)
        .env_remove("REDIS_URL")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info");
    cmd
}

fn run(mut cmd: impl std::borrow::BorrowMut<Command>) -> Output {
    cmd.borrow_mut().output().expect("run streamhost")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config with one `echo` plugin and `extra` appended.
fn config_file(dir: &Path, name: &str, url: &str, extra: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[redis]\nurl = {url:?}\n{extra}\n[[plugin]]\nname = \"echo\"\ncomponent = {:?}\nstream = \"cli:events\"\n",
        artifacts::ECHO
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn assert_exit(case: &str, out: &Output, code: i32, wants: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{case}: exit code; stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{case}: panicked:\n{err}");
    for want in wants {
        assert!(err.contains(want), "{case}: {want:?} missing from:\n{err}");
    }
}

#[test]
fn logs_are_coloured_only_when_asked_or_on_a_terminal_and_json_is_flat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config_file(dir.path(), "c.toml", "redis://127.0.0.1:1", "");
    let cfg = cfg.to_str().expect("utf-8");

    // stderr is a pipe here, as with `2>file` or `| cat`.
    let piped = run(streamhost(&["check", "--offline", "-c", cfg]));
    assert_exit("piped", &piped, 0, &["loaded"]);
    assert!(
        !text(&piped.stderr).contains('\x1b'),
        "ANSI codes in a pipe:\n{}",
        text(&piped.stderr)
    );

    let always = run(streamhost(&[
        "--color",
        "always",
        "check",
        "--offline",
        "-c",
        cfg,
    ]));
    assert!(
        text(&always.stderr).contains("\x1b["),
        "--color always: no colour"
    );
    let no_color = run(
        streamhost(&["--color", "always", "check", "--offline", "-c", cfg]).env("NO_COLOR", "1"),
    );
    assert!(
        text(&no_color.stderr).contains("\x1b["),
        "an explicit --color always wins over NO_COLOR"
    );
    let never = run(streamhost(&[
        "--color",
        "never",
        "check",
        "--offline",
        "-c",
        cfg,
    ]));
    assert!(!text(&never.stderr).contains('\x1b'));

    let json = run(streamhost(&[
        "--log-format",
        "json",
        "check",
        "--offline",
        "-c",
        cfg,
    ]));
    let line = text(&json.stderr)
        .lines()
        .find(|l| l.contains("loaded"))
        .map(str::to_owned)
        .expect("a loaded line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(v["message"], "loaded", "{line}");
    assert_eq!(v["plugin"], "echo", "fields beside the message: {line}");
    assert!(v.get("fields").is_none(), "nested fields: {line}");
    assert!(!line.contains('\x1b'), "{line}");
}

#[test]
fn version_names_the_wit_packages_the_host_accepts() {
    let out = run(streamhost(&["--version"]));
    assert_exit("--version", &out, 0, &[]);
    let stdout = text(&out.stdout);
    for package in streamhost::plugin::WIT_PACKAGES {
        assert!(stdout.contains(package), "{package} missing from {stdout}");
    }
    assert!(stdout.contains("streamhost:plugin@0.1.0"), "{stdout}");
}

#[test]
fn check_rejects_what_run_would_reject() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    for bad in ["127.0.0.1:6379", "http://127.0.0.1:6379"] {
        let cfg = config_file(d, "url.toml", bad, "");
        for command in ["check", "run"] {
            let out = run(streamhost(&[command, "-c", cfg.to_str().unwrap()]));
            assert_exit(
                &format!("{command} url {bad}"),
                &out,
                2,
                &["redis.url", "redis://HOST:PORT", bad],
            );
        }
    }
    let cfg = config_file(
        d,
        "listen.toml",
        &redis.url(),
        "[admin]\nlisten = \"127.0.0.1:99999\"\n",
    );
    let out = run(streamhost(&["check", "-c", cfg.to_str().unwrap()]));
    assert_exit("listen", &out, 2, &["admin.listen", "127.0.0.1:99999"]);

    let down = config_file(d, "down.toml", "redis://127.0.0.1:1", "");
    let out = run(streamhost(&["check", "-c", down.to_str().unwrap()]));
    assert_exit("redis down", &out, 1, &["does not answer", "--offline"]);
    let out = run(streamhost(&[
        "check",
        "--offline",
        "-c",
        down.to_str().unwrap(),
    ]));
    assert_exit("offline", &out, 0, &[]);

    let up = config_file(d, "up.toml", &redis.url(), "");
    let out = run(streamhost(&["check", "-c", up.to_str().unwrap()]));
    assert_exit("redis up", &out, 0, &[]);
    assert!(
        text(&out.stdout).contains("answers"),
        "{}",
        text(&out.stdout)
    );
}

#[tokio::test]
async fn deploy_needs_create_for_unknown_names_and_skips_the_current_digest() {
    let redis = start_redis();
    let url = redis.url();
    let deploy = |plugin: &str, extra: &[&str]| {
        let mut args = vec!["deploy", plugin, artifacts::ECHO, "--redis", &url];
        args.extend_from_slice(extra);
        run(streamhost(&args).env("USER", "alice"))
    };
    let out = deploy("ecoh", &[]);
    assert_exit("typo", &out, 2, &["\"ecoh\"", "--create"]);
    let mut conn = connect(&url).await;
    assert!(
        streamhost::deploy::versions(&mut conn, "ecoh")
            .await
            .unwrap()
            .is_empty(),
        "nothing recorded"
    );

    let out = deploy("ecoh", &["--create"]);
    assert_exit("create", &out, 0, &[]);
    assert!(
        text(&out.stdout).contains("version 1"),
        "{}",
        text(&out.stdout)
    );
    let out = deploy("ecoh", &[]);
    assert_exit("same digest", &out, 0, &[]);
    assert!(
        text(&out.stdout).contains("nothing changed"),
        "{}",
        text(&out.stdout)
    );
    let history = streamhost::deploy::versions(&mut conn, "ecoh")
        .await
        .unwrap();
    assert_eq!(
        history.len(),
        1,
        "the current digest again made a version: {history:?}"
    );
    assert_eq!(history[0].by, "alice", "--by defaults to the user");

    let out = run(streamhost(&["rollback", "ecoh", "7", "--redis", &url]));
    assert_exit("rollback 7", &out, 2, &["no version 7", "1 to 1"]);
    let out = run(streamhost(&["rollback", "ecoh", "--redis", &url]));
    assert_exit("nothing to roll back to", &out, 2, &["no earlier version"]);
    let help = text(&run(streamhost(&["rollback", "--help"])).stdout);
    assert!(
        help.contains("newest version whose component differs from the current one"),
        "{help}"
    );

    // A name a host runs is known without --create.
    let mut host_cfg = config(&url, vec![plugin("echo", artifacts::ECHO, "cli:known")]);
    host_cfg.plugins[0].consumer = Some("known-host".into());
    let host = InProcessHost::start(host_cfg).await;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut conn = conn.clone();
            async move {
                streamhost::deploy::is_known(&mut conn, "echo")
                    .await
                    .unwrap_or(false)
            }
        })
        .await
    );
    let out = deploy("echo", &[]);
    assert_exit("known plugin", &out, 0, &[]);
    host.stop().await;
}

#[test]
fn status_watch_refreshes_until_stopped() {
    let redis = start_redis();
    let mut child = streamhost(&[
        "status",
        "--redis",
        &redis.url(),
        "--stream",
        "cli:w",
        "--watch",
        "--interval",
        "0.2",
        "--json",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("spawn status");
    std::thread::sleep(Duration::from_millis(1500));
    let _ = child.kill();
    let out = child.wait_with_output().expect("status output");
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert!(
        lines.len() >= 3,
        "refreshed {} times:\n{lines:?}",
        lines.len()
    );
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).expect("one JSON report per line");
        assert!(v["time_ms"].as_u64().is_some(), "{l}");
    }
    let table = streamhost(&[
        "status",
        "--redis",
        &redis.url(),
        "--stream",
        "cli:w",
        "--watch",
        "--interval",
        "0.2",
    ])
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("spawn status");
    std::thread::sleep(Duration::from_millis(800));
    let mut table = table;
    let _ = table.kill();
    let out = table.wait_with_output().expect("status output");
    let stdout = text(&out.stdout);
    assert!(
        !stdout.contains('\x1b'),
        "terminal escapes in a pipe: {stdout:?}"
    );
    assert!(
        stdout.matches("no consumer groups").count() >= 2,
        "{stdout}"
    );
}

/// Waits until `host`'s log contains `want`, up to `timeout`.
fn wait_for_log(host: &HostProcess, want: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if host.log().contains(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

const TWIN: &str = "SAME CONSUMER NAME";

#[test]
fn two_hosts_with_one_consumer_name_are_told_loudly_and_a_restart_is_not() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = plugin("echo", artifacts::ECHO, "cli:twins");
    p.consumer = Some("same-name".into());
    let cfg = config(&redis.url(), vec![p]);

    let first = HostProcess::spawn(dir.path(), "first", &cfg);
    assert!(
        wait_for_log(&first, "consuming", Duration::from_secs(20)),
        "{}",
        first.log_tail()
    );
    std::thread::sleep(Duration::from_secs(1));
    // A restart under a stable name: the killed host's beat is old, not a twin.
    first.signal("-KILL");
    let restarted = HostProcess::spawn(dir.path(), "restarted", &cfg);
    assert!(
        wait_for_log(&restarted, "consuming", Duration::from_secs(20)),
        "{}",
        restarted.log_tail()
    );
    std::thread::sleep(streamhost::HEARTBEAT_INTERVAL * 3);
    assert!(
        !restarted.log().contains(TWIN),
        "a dead predecessor taken for a twin:\n{}",
        restarted.log_tail()
    );

    let twin = HostProcess::spawn(dir.path(), "twin", &cfg);
    let within = streamhost::HEARTBEAT_INTERVAL * 5;
    assert!(
        wait_for_log(&twin, TWIN, within + Duration::from_secs(15)),
        "twin not told:\n{}",
        twin.log_tail()
    );
    assert!(
        wait_for_log(&restarted, TWIN, within),
        "the first host not told:\n{}",
        restarted.log_tail()
    );
    assert_eq!(
        twin.log().matches(TWIN).count(),
        1,
        "repeated at once:\n{}",
        twin.log_tail()
    );
}

#[test]
fn a_redis_outage_is_one_line_down_and_one_line_back() {
    let mut redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(
        &redis.url(),
        vec![plugin("echo", artifacts::ECHO, "cli:outage")],
    );
    let host = HostProcess::spawn(dir.path(), "host", &cfg);
    assert!(
        wait_for_log(&host, "consuming", Duration::from_secs(20)),
        "{}",
        host.log_tail()
    );
    std::thread::sleep(Duration::from_secs(1));
    let before = host.log().lines().count();
    redis.stop();
    std::thread::sleep(Duration::from_secs(6));
    redis.restart(&[]).expect("redis restarts");
    assert!(
        wait_for_log(&host, "Redis answers again", Duration::from_secs(20)),
        "{}",
        host.log_tail()
    );
    std::thread::sleep(Duration::from_secs(1));
    let log = host.log();
    let during: Vec<&str> = log.lines().skip(before).collect();
    let warns = during.iter().filter(|l| l.contains("WARN")).count();
    assert_eq!(
        during
            .iter()
            .filter(|l| l.contains("Redis does not answer"))
            .count(),
        1,
        "{during:#?}"
    );
    // Down, back, and the group recreated on the empty restarted server.
    assert!(
        warns <= 2,
        "{warns} WARN lines for a 6 s outage:\n{during:#?}"
    );
    assert!(
        during.len() <= 6,
        "{} lines for a 6 s outage:\n{during:#?}",
        during.len()
    );
}

/// A rejected entry is one INFO line, `dead-lettered`, that says which
/// stream, which version and which DLQ; not a "rejected" line and then a
/// "dead-lettered" one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_entry_is_one_info_line_naming_stream_version_and_dlq() {
    let redis = start_redis();
    let dir = tempfile::tempdir().expect("temp dir");
    let stream = "events:logged";
    let host = HostProcess::spawn(
        dir.path(),
        "host",
        &config(
            &redis.url(),
            vec![plugin("recorder", artifacts::RECORDER, stream)],
        ),
    );
    let mut conn = connect(&redis.url()).await;
    let ids = produce(&mut conn, stream, 3, |i| {
        vec![
            ("reject".to_owned(), b"1".to_vec()),
            ("n".to_owned(), i.to_string().into_bytes()),
        ]
    })
    .await;
    let dlq = "dlq:events:logged:recorder";
    assert!(
        wait_until(Duration::from_secs(30), || async {
            xlen(&mut conn.clone(), dlq).await == 3
        })
        .await,
        "not dead-lettered:\n{}",
        host.log_tail()
    );
    // The line follows the DLQ write; give it a moment to reach the file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = ledger::strip_ansi(&host.log());
        let all_logged = ids.iter().all(|id| {
            log.lines()
                .any(|l| l.contains(id.as_str()) && l.contains("dead-lettered"))
        });
        if all_logged || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for id in &ids {
        let info: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(id.as_str()) && l.contains(" INFO "))
            .filter(|l| !l.contains("recorder handled")) // the guest's own line
            .collect();
        assert_eq!(info.len(), 1, "INFO lines for {id}:\n{}", info.join("\n"));
        let line = info[0];
        for want in [
            "dead-lettered",
            "stream=\"events:logged\"",
            "version=\"sha256:",
            "dlq=\"dlq:events:logged:recorder\"",
            "reason=\"rejected\"",
        ] {
            assert!(line.contains(want), "no {want:?} in: {line}");
        }
    }
}
