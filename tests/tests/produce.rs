//! `streamhost produce` against a real redis-server: items from arguments
//! and JSONL files land on streams, lists, sorted sets (with scores or a
//! delay) and Pub/Sub channels byte for byte; bad input exits 2.

use std::process::{Command, Output};

use streamhost_tests::*;

fn produce(url: &str, args: &[&str]) -> Output {
    Command::new(streamhost_bin())
        .arg("produce")
        .arg("--redis")
        .arg(url)
        .args(args)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost produce")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_puts_items_on_every_source() {
    let redis = start_redis();
    let url = redis.url();
    let mut conn = connect(&url).await;
    let dir = tempfile::tempdir().expect("temp dir");

    let out = ok(&produce(&url, &["--list", "jobs", "a", "b", "a"]));
    assert!(out.contains("produced 3 item(s) to list jobs"), "{out}");
    let items: Vec<String> = redis::cmd("LRANGE")
        .arg("jobs")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .expect("LRANGE");
    assert_eq!(
        items,
        ["a", "b", "a"]
            .iter()
            .rev()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        "LPUSH order; equal items kept"
    );

    let jsonl = dir.path().join("items.jsonl");
    std::fs::write(
        &jsonl,
        "{\"order_id\":1,\"note\":\"x\"}\n\"plain\"\n\n{\"member\":\"m\",\"score\":-3}\n",
    )
    .expect("write");
    ok(&produce(
        &url,
        &[
            "--stream",
            "events",
            "--file",
            jsonl.to_str().expect("path"),
        ],
    ));
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("events")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let fields: Vec<Vec<(String, String)>> = entries.into_iter().map(|(_, f)| f).collect();
    assert_eq!(
        fields,
        vec![
            vec![("note".into(), "x".into()), ("order_id".into(), "1".into())],
            vec![("data".into(), "plain".into())],
            vec![("member".into(), "m".into()), ("score".into(), "-3".into())],
        ]
    );

    ok(&produce(
        &url,
        &[
            "--sorted-set",
            "q",
            "--file",
            jsonl.to_str().expect("path"),
            "--score",
            "7",
        ],
    ));
    let scored: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("q")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    assert_eq!(scored[0], ("m".to_owned(), -3.0), "a line's own score wins");
    assert!(
        scored.iter().any(|(m, s)| m == "plain" && *s == 7.0),
        "{scored:?}"
    );

    let before = streamhost::display::now_ms() as f64;
    ok(&produce(
        &url,
        &["--sorted-set", "later", "--delay", "60s", "soon"],
    ));
    let due: f64 = redis::cmd("ZSCORE")
        .arg("later")
        .arg("soon")
        .query_async(&mut conn)
        .await
        .expect("ZSCORE");
    assert!(
        due >= before + 60_000.0 && due < before + 70_000.0,
        "due {due} vs now {before}"
    );

    let out = ok(&produce(&url, &["--channel", "nobody-listens", "hello"]));
    assert!(
        out.contains("published 1 message(s)") && out.contains("0 delivery"),
        "{out}"
    );

    // Long files report progress.
    let big = dir.path().join("big.jsonl");
    std::fs::write(
        &big,
        (0..25_000)
            .map(|i| format!("\"item-{i}\"\n"))
            .collect::<String>(),
    )
    .expect("write");
    let out = produce(
        &url,
        &["--list", "big", "--file", big.to_str().expect("path")],
    );
    ok(&out);
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("produced 10000/25000") && progress.contains("produced 25000/25000"),
        "{progress}"
    );
    let n: u64 = redis::cmd("LLEN")
        .arg("big")
        .query_async(&mut conn)
        .await
        .expect("LLEN");
    assert_eq!(n, 25_000);
}

#[test]
fn produce_bad_input_exits_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "\"ok\"\nnot json\n").expect("write");
    for (case, args, want) in [
        ("no target", vec!["x"], "--stream"),
        (
            "two targets",
            vec!["--list", "a", "--stream", "b", "x"],
            "cannot be used with",
        ),
        (
            "nothing to produce",
            vec!["--list", "a"],
            "nothing to produce",
        ),
        (
            "a line that is not JSON",
            vec!["--list", "a", "--file", bad.to_str().expect("path")],
            "bad.jsonl line 2: not JSON",
        ),
        (
            "a score without a sorted set",
            vec!["--list", "a", "--score", "1", "x"],
            "--sorted-set",
        ),
    ] {
        // Port 1: bad input is refused before Redis is reached.
        let out = produce("redis://127.0.0.1:1", &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {err}");
        assert!(err.contains(want), "{case}: {want:?} not in {err}");
    }
}
