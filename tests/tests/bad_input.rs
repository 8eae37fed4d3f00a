//! Bad input to the real binary: each case exits with 2 and one clear message
//! naming what is wrong (file, line, key, plugin, import), never a panic.

use std::path::Path;
use std::process::{Command, Output};

use streamhost_tests::*;

/// Runs `streamhost-e2e <command> --config <path>` (Redis is never reached:
/// bad input is caught before connecting).
fn streamhost(command: &str, config: &Path) -> Output {
    Command::new(streamhost_bin())
        .arg(command)
        .arg("--config")
        .arg(config)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost")
}

/// A config with one plugin `p1` using `component`, plus `extra` lines.
fn config_file(dir: &Path, name: &str, component: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let text = format!(
        "[redis]\nurl = \"redis://127.0.0.1:1\"\n\n[[plugin]]\nname = \"p1\"\ncomponent = {:?}\nstream = \"events\"\n{extra}",
        component.to_str().expect("utf-8 path")
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Checks exit code 2, that stderr names every `wants`, and that it says each
/// thing once (an error chain printed with its sources repeated is noise).
fn assert_bad_input(case: &str, out: &Output, wants: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{case}: exit code; stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "{case}: panicked:\n{err}");
    for want in wants {
        assert!(err.contains(want), "{case}: {want:?} missing from:\n{err}");
    }
    let first = err.lines().next().unwrap_or_default();
    let parts: Vec<&str> = first.split(": ").filter(|p| p.len() >= 12).collect();
    for part in &parts {
        assert_eq!(
            parts.iter().filter(|p| p == &part).count(),
            1,
            "{case}: {part:?} said twice:\n{err}"
        );
    }
}

#[test]
fn each_bad_input_exits_2_naming_the_problem() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let echo = Path::new(artifacts::ECHO);

    let missing = d.join("nowhere.toml");
    assert_bad_input(
        "missing config file",
        &streamhost("run", &missing),
        &["nowhere.toml", "cannot read config file"],
    );

    let malformed = d.join("malformed.toml");
    std::fs::write(&malformed, "[redis]\nurl = \"redis://unterminated\n").expect("write");
    assert_bad_input(
        "malformed TOML",
        &streamhost("run", &malformed),
        &["malformed.toml", "line 2"],
    );

    let unknown = config_file(d, "unknown.toml", echo, "[plugin.retry]\nmax_attempt = 3\n");
    assert_bad_input(
        "unknown key",
        &streamhost("run", &unknown),
        &["unknown.toml", "line 9", "unknown field `max_attempt`"],
    );

    let invalid = config_file(d, "invalid.toml", echo, "batch = 0\n");
    assert_bad_input(
        "invalid value",
        &streamhost("run", &invalid),
        &["plugin[0].batch", "must be between"],
    );

    let absent = config_file(d, "absent.toml", &d.join("gone.wasm"), "");
    assert_bad_input(
        "component path missing",
        &streamhost("run", &absent),
        &["\"p1\"", "gone.wasm", "cannot read component"],
    );

    let random = d.join("random.wasm");
    std::fs::write(&random, random_bytes(4096)).expect("write");
    let cfg = config_file(d, "random.toml", &random, "");
    assert_bad_input(
        "random bytes",
        &streamhost("run", &cfg),
        &["\"p1\"", "random.wasm", "is not a Wasm component"],
    );

    let core = d.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let cfg = config_file(d, "core.toml", &core, "");
    assert_bad_input(
        "core module",
        &streamhost("run", &cfg),
        &["\"p1\"", "core.wasm", "core Wasm module"],
    );

    let cfg = config_file(d, "wrong.toml", Path::new(artifacts::WRONG_WORLD), "");
    assert_bad_input(
        "wrong world",
        &streamhost("run", &cfg),
        &["\"p1\"", "`handle`", "does not implement"],
    );

    let bomb = d.join("bomb.wasm");
    std::fs::write(&bomb, synth::empty_functions(300_000)).expect("write");
    let cfg = config_file(d, "bomb.toml", &bomb, "");
    let started = std::time::Instant::now();
    let out = streamhost("check", &cfg);
    let took = started.elapsed();
    assert_bad_input(
        "compile-cost bomb",
        &out,
        &[
            "\"p1\"",
            "300000 functions",
            "limits.max_functions",
            "before compiling",
        ],
    );
    // Compiling it would take tens of seconds and gigabytes; refusing, milliseconds.
    assert!(
        took < std::time::Duration::from_secs(10),
        "check took {took:?}"
    );

    let zero = config_file(d, "zero.toml", Path::new("/dev/zero"), "");
    assert_bad_input(
        "/dev/zero as component",
        &streamhost("check", &zero),
        &["\"p1\"", "/dev/zero", "character device"],
    );
    let fifo = d.join("fifo.wasm");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo");
    let cfg = config_file(d, "fifo.toml", &fifo, "");
    assert_bad_input(
        "FIFO as component (no writer: opening it would block)",
        &streamhost("check", &cfg),
        &["\"p1\"", "fifo.wasm", "a FIFO"],
    );

    let empty = d.join("empty.toml");
    std::fs::write(&empty, "[redis]\nurl = \"redis://127.0.0.1:1\"\n").expect("write");
    assert_bad_input(
        "no plugins",
        &streamhost("run", &empty),
        &["empty.toml", "no [[plugin]]"],
    );
}

/// `streamhost-e2e deploy PLUGIN FILE --redis <nowhere>`: refused before Redis.
fn deploy(plugin: &str, file: &Path) -> Output {
    Command::new(streamhost_bin())
        .args(["deploy", plugin])
        .arg(file)
        .args(["--redis", "redis://127.0.0.1:1"])
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost deploy")
}

/// `deploy` reads at most the size limit of whatever it is given, and takes
/// only plugin names a config could hold.
#[test]
fn deploy_refuses_devices_and_names_the_config_would_refuse() {
    assert_bad_input(
        "deploy /dev/zero",
        &deploy("p", Path::new("/dev/zero")),
        &["/dev/zero", "character device"],
    );
    let echo = Path::new(artifacts::ECHO);
    for name in ["", "a:b{c}", "two words"] {
        assert_bad_input(
            &format!("deploy {name:?}"),
            &deploy(name, echo),
            &["plugin", &format!("{name:?}")],
        );
    }
}

/// Bad input on the other commands: arguments naming nothing that exists,
/// malformed ids and URLs, a config the engine cannot size. Each exited 1.
#[test]
fn bad_arguments_exit_2_naming_the_problem() {
    let redis = start_redis();
    let url = redis.url();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let cli = |args: &[&str]| {
        Command::new(streamhost_bin())
            .args(args)
            .env_remove("REDIS_URL")
            .output()
            .expect("run streamhost")
    };
    assert_bad_input(
        "missing deploy file",
        &cli(&["deploy", "p1", "/nowhere/x.wasm", "--redis", &url]),
        &["/nowhere/x.wasm", "cannot read component"],
    );
    assert_bad_input(
        "rollback to a version that does not exist",
        &cli(&["rollback", "p1", "7", "--redis", &url]),
        &["\"p1\"", "never deployed"],
    );
    assert_bad_input(
        "dlq show of an unknown id",
        &cli(&["dlq", "--redis", &url, "--stream", "dlq:x", "show", "1-1"]),
        &["no dead letter 1-1", "dlq:x"],
    );
    assert_bad_input(
        "a bad stream id",
        &cli(&["dlq", "--redis", &url, "--stream", "dlq:x", "show", "12-x"]),
        &["\"12-x\"", "stream entry id"],
    );
    assert_bad_input(
        "a bad --redis URL",
        &cli(&["status", "--redis", "127.0.0.1:6379", "--stream", "s"]),
        &["--redis", "redis://HOST:PORT"],
    );
    let bad_env = Command::new(streamhost_bin())
        .args(["status", "--stream", "s"])
        .env("REDIS_URL", "http://127.0.0.1:6379")
        .output()
        .expect("run streamhost");
    assert_bad_input(
        "a bad REDIS_URL",
        &bad_env,
        &["REDIS_URL", "redis://HOST:PORT"],
    );

    let echo = Path::new(artifacts::ECHO);
    let cfg = config_file(d, "pool.toml", echo, "concurrency = 1024\n");
    // The pool reserves address space for every slot up front; a
    // concurrency it cannot fit is the config's fault, said as such.
    let pool = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 8000000 && exec \"$0\" check --offline --config \"$1\"")
        .arg(streamhost_bin())
        .arg(&cfg)
        .output()
        .expect("run sh");
    assert_bad_input(
        "pool reservation",
        &pool,
        &["instance slots", "concurrency"],
    );

    // A relative cache dir is relative to the config file, as components are.
    let rel = d.join("rel");
    std::fs::create_dir(&rel).expect("mkdir");
    let cfg = config_file(&rel, "cache.toml", echo, "");
    let text = std::fs::read_to_string(&cfg).expect("read");
    std::fs::write(&cfg, format!("[cache]\ndir = \"compiled\"\n{text}")).expect("write");
    let out = cli(&[
        "check",
        "--offline",
        "--config",
        cfg.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rel.join("compiled").exists(),
        "cache not beside the config file"
    );
}

/// Deterministic bytes that are not Wasm (xorshift).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `streamhost-e2e check --offline --config <path>`.
fn check_offline(config: &Path) -> Output {
    Command::new(streamhost_bin())
        .args(["check", "--offline", "--config"])
        .arg(config)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost check")
}

/// `check` warns when a component imports effects its `[plugin.allow]`
/// permits nowhere (each such call would be refused), and only then.
#[test]
fn check_warns_about_effects_the_config_does_not_allow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let probe = Path::new(artifacts::EFFECTS_PROBE);
    let cfg = config_file(
        dir.path(),
        "probe.toml",
        probe,
        "[plugin.allow]\nemit = [\"out:*\"]\n",
    );
    let out = check_offline(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for effect in ["publish", "schedule"] {
        assert!(
            text.contains(&format!(
                "imports `{effect}`, but [plugin.allow] {effect} is empty"
            )),
            "no warning about {effect}:\n{text}"
        );
    }
    assert!(!text.contains("imports `emit`"), "emit is allowed:\n{text}");
    let cfg = config_file(
        dir.path(),
        "validator.toml",
        Path::new(artifacts::ORDER_VALIDATOR),
        "",
    );
    let out = check_offline(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !text.contains("warning"),
        "order-validator uses no effects:\n{text}"
    );
}

#[test]
fn source_keys_are_one_of_stream_subscribe_list_sorted_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let echo = Path::new(artifacts::ECHO);
    // `config_file` writes `stream = "events"`: each case adds what is wrong.
    let two = config_file(d, "two.toml", echo, "list = \"jobs\"\n");
    assert_bad_input(
        "two source keys",
        &streamhost("check", &two),
        &["plugin[0].list", "exactly one source key", "stream, list"],
    );
    let order = config_file(d, "order.toml", echo, "order = \"due\"\n");
    assert_bad_input(
        "order without sorted_set",
        &streamhost("check", &order),
        &["plugin[0].order", "only applies to a sorted_set"],
    );
    let bad_order = config_file(d, "bad_order.toml", echo, "order = \"fifo\"\n");
    assert_bad_input(
        "an unknown order",
        &streamhost("check", &bad_order),
        &["bad_order.toml", "fifo", "priority", "due"],
    );
    let path = d.join("empty_subscribe.toml");
    std::fs::write(
        &path,
        format!(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\n\n[[plugin]]\nname = \"p1\"\ncomponent = {:?}\nsubscribe = []\n",
            echo.to_str().expect("utf-8 path")
        ),
    )
    .expect("write config");
    assert_bad_input(
        "an empty subscribe",
        &streamhost("check", &path),
        &["plugin[0].subscribe", "at least one channel"],
    );
    let path = d.join("none.toml");
    std::fs::write(
        &path,
        format!(
            "[redis]\nurl = \"redis://127.0.0.1:1\"\n\n[[plugin]]\nname = \"p1\"\ncomponent = {:?}\n",
            echo.to_str().expect("utf-8 path")
        ),
    )
    .expect("write config");
    assert_bad_input(
        "no source key",
        &streamhost("check", &path),
        &["plugin[0].stream", "subscribe, list or sorted_set"],
    );
}
