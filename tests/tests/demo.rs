//! `streamhost demo`, the README's main command, end to end through the real binary.

use std::process::{Command, Output};

use streamhost_tests::*;

fn demo(args: &[&str]) -> Output {
    Command::new(streamhost_bin())
        .arg("demo")
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost demo")
}

fn assert_demo_ok(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("demo ok"),
        "{}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("msg/s"), "{stdout}");
}

#[test]
fn demo_runs_against_a_given_redis() {
    let redis = start_redis();
    let out = demo(&["--count", "2000", "--redis", &redis.url()]);
    assert_demo_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("100 invalid"),
        "one in twenty is invalid:\n{stdout}"
    );
}

/// With neither `--redis` nor `REDIS_URL` the demo finds a Redis itself: the
/// local default when it answers (the demo uses unique keys and deletes them),
/// else a private `redis-server` it starts.
#[test]
fn demo_finds_a_redis_by_itself() {
    assert_demo_ok(&demo(&["--count", "2000"]));
}
