//! `streamhost bench` keeps working: a tiny run exits 0 and writes every
//! figure to its JSON file. (Speed itself is judged by the full benchmark,
//! never asserted here.)

use std::process::Command;

use streamhost_tests::streamhost_bin;

#[test]
fn a_small_bench_run_reports_every_figure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("bench.json");
    let output = Command::new(streamhost_bin())
        .args(["bench", "--entries", "5000", "--slow-entries", "2000"])
        .args(["--latency-rate", "2000", "--latency-secs", "1", "--json"])
        .arg(&json)
        .env_remove("REDIS_URL")
        .output()
        .expect("run streamhost-e2e bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "bench failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("per-message"), "table printed:\n{stdout}");

    let text = std::fs::read_to_string(&json).expect("JSON written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    for key in ["date", "command", "machine", "entries", "runs", "goals"] {
        assert!(report.get(key).is_some(), "missing {key} in {text}");
    }
    let runs = report["runs"].as_array().expect("runs is an array");
    let names: Vec<&str> = runs.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "native",
            "wasm",
            "hand-written",
            "per-message",
            "latency",
            "list",
            "hand-written-list",
            "sorted-set",
            "hand-written-zset",
            "pubsub"
        ]
    );
    for run in runs {
        let name = &run["name"];
        for key in ["entries_per_sec", "host_cpu_s_per_million", "peak_rss_mib"] {
            let value = run[key].as_f64().unwrap_or(-1.0);
            assert!(value > 0.0, "{name}: {key} = {value}");
        }
    }
    assert_eq!(runs[0]["entries"], 5000, "native handled every entry");
    assert_eq!(runs[1]["entries"], 5000, "wasm handled every entry");
    assert_eq!(runs[2]["entries"], 2000, "hand-written handled its share");
    assert_eq!(runs[5]["entries"], 5000, "list handled every item");
    assert_eq!(
        runs[6]["entries"], 2000,
        "hand-written-list handled its share"
    );
    assert_eq!(runs[7]["entries"], 5000, "sorted-set handled every member");
    assert_eq!(
        runs[8]["entries"], 2000,
        "hand-written-zset handled its share"
    );
    assert_eq!(runs[9]["entries"], 2000, "pubsub handled every message");
    let wasm = &runs[1];
    assert!(wasm["vs_native"].as_f64().is_some() && wasm["vs_hand_written"].as_f64().is_some());
    let latency = &runs[4]["latency_ms"];
    for key in ["p50", "p99", "p999"] {
        assert!(
            latency[key].as_f64().is_some(),
            "latency {key} in {latency}"
        );
    }
    assert!(latency["samples"].as_u64().unwrap_or(0) > 0);
}
