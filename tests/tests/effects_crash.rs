//! Effects under crashes: `customer-totals` folds orders into kv state and
//! `order-enricher` emits one `order.accepted` per order, while two host
//! processes are killed with SIGKILL again and again and hand entries to each
//! other by claiming. The result must equal the exact fold of the input.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use streamhost::config::{AllowConfig, Config};
use streamhost_tests::*;

const ORDERS: usize = 100_000;
const CUSTOMERS: usize = 50;
const STREAM: &str = "events:orders";
const ACCEPTED: &str = "events:orders:accepted";

fn order_fields(i: usize) -> Vec<(String, Vec<u8>)> {
    let data = format!(
        r#"{{"order_id":{i},"customer":"c-{}","amount_cents":{}}}"#,
        i % CUSTOMERS,
        100 + i % 900
    );
    vec![("data".to_owned(), data.into_bytes())]
}

fn host_config(url: &str, consumer: &str) -> Config {
    let mut totals = plugin("customer-totals", artifacts::CUSTOMER_TOTALS, STREAM);
    let mut enricher = plugin("order-enricher", artifacts::ORDER_ENRICHER, STREAM);
    enricher.allow = AllowConfig {
        emit: vec![ACCEPTED.to_owned()],
        ..AllowConfig::default()
    };
    for p in [&mut totals, &mut enricher] {
        p.consumer = Some(consumer.to_owned());
        p.batch = 256;
        p.claim.min_idle_ms = 1_000;
        p.claim.interval_ms = 250;
    }
    config(url, vec![totals, enricher])
}

async fn group_done(conn: &mut redis::aio::MultiplexedConnection, last_id: &str) -> bool {
    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .query_async(conn)
        .await
        .unwrap_or_default();
    groups.len() == 2
        && groups.iter().all(|g| {
            let pending = matches!(g.get("pending"), Some(redis::Value::Int(0)));
            let delivered = match g.get("last-delivered-id") {
                Some(redis::Value::BulkString(b)) => b == last_id.as_bytes(),
                Some(redis::Value::SimpleString(s)) => s == last_id,
                _ => false,
            };
            pending && delivered
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn effects_are_applied_exactly_once_through_repeated_kills() {
    let redis = start_redis();
    let url = redis.url();
    let mut conn = connect(&url).await;
    let ids = produce(&mut conn, STREAM, ORDERS, order_fields).await;
    let last_id = ids.last().cloned().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let names = ["host-a", "host-b"];
    let mut hosts: Vec<HostProcess> = names
        .iter()
        .map(|n| HostProcess::spawn(dir.path(), n, &host_config(&url, n)))
        .collect();
    let started = Instant::now();
    let mut kills = 0;
    while kills < 8 && !group_done(&mut conn, &last_id).await {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let victim = kills % 2;
        hosts[victim].signal("-KILL");
        hosts[victim].wait(Duration::from_secs(5));
        kills += 1;
        hosts[victim] = HostProcess::spawn(
            dir.path(),
            &format!("{}-{kills}", names[victim]),
            &host_config(&url, names[victim]),
        );
    }
    let finished = wait_until(Duration::from_secs(180), || async {
        group_done(&mut connect(&url).await, &last_id).await
    })
    .await;
    for h in &mut hosts {
        h.signal("-TERM");
        h.wait(Duration::from_secs(10));
    }
    assert!(
        finished,
        "both groups consumed everything within the time limit"
    );

    // The exact fold of the input.
    let mut expected: HashMap<String, (u64, i64)> = HashMap::new();
    for i in 0..ORDERS {
        let e = expected.entry(format!("c-{}", i % CUSTOMERS)).or_default();
        e.0 += 1;
        e.1 += 100 + (i % 900) as i64;
    }
    let mut mismatches = 0;
    for (customer, (count, total)) in &expected {
        let raw: Option<String> = redis::cmd("GET")
            .arg(format!("state:customer-totals:customer:{customer}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let state: serde_json::Value =
            serde_json::from_str(&raw.unwrap_or_default()).unwrap_or_default();
        if state["count"] != *count || state["total_cents"] != *total {
            mismatches += 1;
            eprintln!("{customer}: expected count {count} total {total}, got {state}");
        }
    }
    let mut accepted: Vec<(String, HashMap<String, String>)> = Vec::new();
    let mut from = "-".to_owned();
    loop {
        let page: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(ACCEPTED)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(5000)
            .query_async(&mut conn)
            .await
            .unwrap();
        let Some((last, _)) = page.last() else { break };
        from = format!("({last}");
        accepted.extend(page);
    }
    let unique: HashSet<&str> = accepted
        .iter()
        .filter_map(|(_, f)| f.get("order_id").map(String::as_str))
        .collect();
    let duplicates = accepted.len() - unique.len();
    eprintln!(
        "effects crash test: {ORDERS} orders, {kills} SIGKILLs, {:.1} s; customers wrong: {mismatches}; \
         accepted entries: {} ({} unique, {duplicates} duplicates, {} missing)",
        started.elapsed().as_secs_f64(),
        accepted.len(),
        unique.len(),
        ORDERS - unique.len()
    );
    assert!(
        kills >= 2,
        "the hosts were killed at least twice while working"
    );
    assert_eq!(
        mismatches, 0,
        "every customer's totals equal the fold of the input"
    );
    assert_eq!(duplicates, 0, "no order accepted twice");
    assert_eq!(unique.len(), ORDERS, "every order accepted");
}
