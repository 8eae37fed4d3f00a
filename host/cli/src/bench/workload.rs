//! The benchmark's entries: valid orders of about 150 bytes of JSON in field
//! `data`, like the demo's, written with pipelined `XADD`s.

use redis::aio::MultiplexedConnection;

use streamhost::Result;

/// `XADD`s per pipelined round trip while pre-filling.
const PREFILL_PIPELINE: u64 = 1_000;

/// The `data` of order `i`: a JSON object that `order-validator` accepts.
pub fn order_json(i: u64) -> String {
    format!(
        r#"{{"order_id":{i},"customer":"c-{}","amount_cents":{},"currency":"EUR","items":[{{"sku":"sku-{}","qty":{}}},{{"sku":"sku-{}","qty":1}}],"channel":"web"}}"#,
        i % 997,
        100 + i % 90_000,
        i % 13,
        1 + i % 3,
        i % 101
    )
}

/// Appends `count` orders to `stream`.
pub async fn prefill(conn: &mut MultiplexedConnection, stream: &str, count: u64) -> Result<()> {
    let mut pipe = redis::pipe();
    for i in 0..count {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg(order_json(i))
            .ignore();
        if (i + 1) % PREFILL_PIPELINE == 0 || i + 1 == count {
            pipe.query_async::<()>(conn).await?;
            pipe.clear();
        }
    }
    Ok(())
}

/// Appends orders `first..first + count`, each stamped with the produce time
/// in field `ts` (microseconds since the Unix epoch), in one round trip.
pub async fn produce_stamped(
    conn: &mut MultiplexedConnection,
    stream: &str,
    first: u64,
    count: u64,
) -> Result<()> {
    let mut pipe = redis::pipe();
    for i in first..first + count {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("data")
            .arg(order_json(i))
            .arg("ts")
            .arg(super::now_micros())
            .ignore();
    }
    pipe.query_async::<()>(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn orders_are_about_150_bytes_of_json() {
        for i in [0, 7, 123_456, 9_999_999] {
            let json = super::order_json(i);
            assert!(
                (120..=170).contains(&json.len()),
                "{} bytes: {json}",
                json.len()
            );
            let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            assert_eq!(v["order_id"], serde_json::json!(i));
        }
    }
}
