//! The reader's own connection (`streams::wire`, a minimal RESP client) honours
//! what the URL says: password, user and database, like every redis-rs
//! connection of the host.

use std::time::Duration;

use streamhost_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_authenticates_and_selects_the_database_of_the_url() {
    let redis = start_redis_with_password().await;
    let url = format!("redis://:s3cret@127.0.0.1:{}/3", redis.port());
    let mut conn = connect(&url).await;
    let stream = "events:orders";
    produce(&mut conn, stream, 500, order).await;
    let host = InProcessHost::start(config(
        &url,
        vec![plugin(
            "order-validator",
            artifacts::ORDER_VALIDATOR,
            stream,
        )],
    ))
    .await;
    let m = host.metrics("order-validator", stream);
    let done = wait_until(Duration::from_secs(30), || async { m.acked.get() >= 500 }).await;
    host.stop().await;
    assert!(done, "acked {} of 500", m.acked.get());
    assert_eq!(m.received.get(), 500);
    assert_eq!(pending(&mut conn, stream, "order-validator").await, 0);

    // Database 0 never saw the stream: the reader read database 3.
    let db0 = format!("redis://:s3cret@127.0.0.1:{}/0", redis.port());
    assert_eq!(xlen(&mut connect(&db0).await, stream).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_handles_nothing_and_still_shuts_down_cleanly() {
    let redis = start_redis_with_password().await;
    let good = format!("redis://:s3cret@127.0.0.1:{}", redis.port());
    let mut conn = connect(&good).await;
    produce(&mut conn, "events:orders", 10, order).await;
    // Host::load does not touch Redis; with a wrong password the host keeps
    // retrying its connections (logging why) and handles nothing, and
    // shutdown still ends it promptly.
    let bad = format!("redis://:wrong@127.0.0.1:{}", redis.port());
    let host = streamhost::Host::load(config(
        &bad,
        vec![plugin(
            "order-validator",
            artifacts::ORDER_VALIDATOR,
            "events:orders",
        )],
    ))
    .await
    .expect("loads");
    let metrics = host.metrics().plugin("order-validator", "events:orders");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(host.run(shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("host stops after shutdown");
    assert_eq!(metrics.received.get(), 0);
}

/// A private server whose password is `s3cret` (set after start, so the
/// harness's readiness check needs none).
async fn start_redis_with_password() -> TestRedis {
    let redis = start_redis();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query_async(&mut connect(&redis.url()).await)
        .await
        .expect("CONFIG SET requirepass");
    redis
}
