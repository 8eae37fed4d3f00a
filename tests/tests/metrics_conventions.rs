//! `/metrics` by Prometheus conventions: the series exist with the
//! values a known workload gives, unit-bearing families carry `# UNIT`, the
//! classic `text/plain; version=0.0.4` is served when the scraper asks for
//! it, and every series the Grafana dashboard in `docs/grafana/` queries is
//! in the exposition.

use std::collections::BTreeSet;
use std::time::Duration;

use streamhost_tests::*;

const STREAM: &str = "conv:orders";
const PLUGIN: &str = "orders";

/// Series names a PromQL expression reads.
fn series_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| t.starts_with("streamhost_") || t.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_prometheus_conventions_and_feed_the_grafana_dashboard() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    produce(&mut conn, STREAM, 3, order).await;
    produce(&mut conn, STREAM, 1, |_| {
        vec![("data".to_owned(), b"not json".to_vec())]
    })
    .await;
    let host = AdminHost::start(
        config(
            &redis.url(),
            vec![plugin(PLUGIN, artifacts::ORDER_VALIDATOR, STREAM)],
        ),
        None,
    )
    .await;
    let labels = [("plugin", PLUGIN), ("stream", STREAM)];
    let settled = wait_until(Duration::from_secs(30), || async {
        let text = host.get("/metrics").await.body;
        sample(&text, "streamhost_entries_acked_total", &labels) == Some(3.0)
            && sample(&text, "streamhost_dlq_entries", &labels) == Some(1.0)
            && sample(&text, "streamhost_redis_up", &[]) == Some(1.0)
    })
    .await;
    let open = host.get("/metrics").await;
    assert!(settled, "metrics did not settle:\n{}", open.body);
    let text = &open.body;

    // The series, with the values this workload gives.
    let v = |name: &str, extra: &[(&str, &str)]| {
        let mut all = labels.to_vec();
        all.extend_from_slice(extra);
        sample(text, name, &all)
    };
    assert_eq!(
        v("streamhost_end_to_end_latency_seconds_count", &[]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        v("streamhost_dead_lettered_total", &[("reason", "rejected")]),
        Some(1.0)
    );
    assert_eq!(
        v("streamhost_dead_lettered_total", &[("reason", "trap:fuel")]),
        Some(0.0)
    );
    assert_eq!(
        sample(text, "streamhost_redis_errors_total", &[("op", "read")]),
        Some(0.0)
    );
    assert_eq!(v("streamhost_entries_in_flight", &[]), Some(0.0));
    assert_eq!(v("streamhost_workers_busy", &[]), Some(0.0));
    assert!(v("streamhost_workers", &[]).is_some_and(|n| n >= 1.0));
    assert_eq!(v("streamhost_retries_waiting", &[]), Some(0.0));
    assert_eq!(v("streamhost_plugin_paused", &[]), Some(0.0));
    assert!(
        v(
            "streamhost_redis_round_trip_seconds_count",
            &[("op", "read")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        v(
            "streamhost_redis_round_trip_seconds_count",
            &[("op", "ack")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(
        sample(
            text,
            "streamhost_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(sample(text, "process_resident_memory_bytes", &[]).is_some_and(|b| b > 1e6));
    // A short test may have used less than one clock tick: present is the point.
    assert!(sample(text, "process_cpu_seconds_total", &[]).is_some_and(|s| s >= 0.0));
    assert!(sample(text, "process_open_fds", &[]).is_some_and(|n| n > 0.0));

    // `# UNIT` on every unit-bearing family.
    for (family, unit) in [
        ("streamhost_end_to_end_latency_seconds", "seconds"),
        ("streamhost_handler_duration_seconds", "seconds"),
        ("streamhost_redis_round_trip_seconds", "seconds"),
        ("streamhost_oldest_pending_age_seconds", "seconds"),
        ("process_resident_memory_bytes", "bytes"),
        ("process_cpu_seconds", "seconds"),
    ] {
        assert!(
            text.contains(&format!("# UNIT {family} {unit}\n")),
            "no # UNIT for {family}:\n{text}"
        );
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap_or("");
        if name.ends_with("_seconds") || name.ends_with("_bytes") {
            assert!(
                text.contains(&format!("# UNIT {name} ")),
                "{name} has a unit suffix but no # UNIT"
            );
        }
    }

    // The classic format when the scraper prefers it.
    let classic = http(
        host.addr,
        "GET",
        "/metrics",
        &[("Accept", "text/plain;version=0.0.4")],
        "",
    )
    .await;
    assert_eq!(classic.status, 200);
    assert!(
        classic
            .headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        classic.headers
    );
    assert!(!classic.body.contains("# EOF"), "0.0.4 has no EOF marker");
    assert!(
        classic
            .body
            .contains("# TYPE streamhost_entries_acked_total counter"),
        "{}",
        classic.body
    );
    assert_eq!(
        sample(&classic.body, "streamhost_entries_acked_total", &labels),
        Some(3.0)
    );
    let prometheus_default =
        "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let negotiated = http(
        host.addr,
        "GET",
        "/metrics",
        &[("Accept", prometheus_default)],
        "",
    )
    .await;
    assert!(
        negotiated
            .headers
            .contains("application/openmetrics-text; version=1.0.0")
    );

    // Every series the Grafana dashboard queries exists.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/grafana/streamhost.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read the Grafana JSON"))
            .expect("Grafana JSON parses");
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queried.extend(series_in(target["expr"].as_str().expect("expr")));
        }
    }
    assert!(
        queried.len() >= 20,
        "the dashboard queries the issue's series: {queried:?}"
    );
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| sample(text, name, &[]).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "Grafana queries series /metrics lacks: {missing:?}\n{text}"
    );
    host.stop().await;
}
