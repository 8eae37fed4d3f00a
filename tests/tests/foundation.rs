//! The foundation: every entry handled once and acked; bad entries end in the DLQ.

use std::time::Duration;

use streamhost_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_entries_are_each_handled_once_and_acked() {
    let redis = start_redis();
    let mut conn = connect(&redis.url()).await;
    let stream = "events:orders";
    produce(&mut conn, stream, 10_000, order).await;
    let host = InProcessHost::start(config(
        &redis.url(),
        vec![plugin(
            "order-validator",
            artifacts::ORDER_VALIDATOR,
            stream,
        )],
    ))
    .await;
    let m = host.metrics("order-validator", stream);
    assert!(
        wait_until(Duration::from_secs(60), || async {
            m.acked.get() >= 10_000
        })
        .await,
        "acked {}",
        m.acked.get()
    );
    host.stop().await;
    assert_eq!(
        m.received.get(),
        10_000,
        "each entry handed to the handler exactly once"
    );
    assert_eq!(m.acked.get(), 10_000);
    assert_eq!(pending(&mut conn, stream, "order-validator").await, 0);
}
