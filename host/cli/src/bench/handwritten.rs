//! The common hand-written consumer the host is compared with: read 10
//! entries, parse each with serde_json, acknowledge each with its own `XACK`.

use std::time::Instant;

use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};

use super::report::Run;
use super::usage::Meter;
use super::{STALL_TIMEOUT, stalled};
use anyhow::{Result, anyhow};

/// Entries per `XREADGROUP`, as such consumers typically ask for.
const COUNT: usize = 10;

/// Consumes `target` entries of `stream` on a fresh group.
pub async fn run(url: &str, stream: &str, target: u64) -> Result<Run> {
    let group = "bench-hand-written";
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .query_async(&mut conn)
        .await?;
    let options = StreamReadOptions::default()
        .group(group, "bench")
        .count(COUNT)
        .block(100);
    let meter = Meter::start(&mut conn).await;
    let (mut done, mut progressed) = (0u64, Instant::now());
    while done < target {
        let reply: Option<StreamReadReply> =
            conn.xread_options(&[stream], &[">"], &options).await?;
        let ids = reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids);
        let before = done;
        for entry in ids {
            let data: Vec<u8> = entry.get("data").unwrap_or_default();
            let order: serde_json::Value = serde_json::from_slice(&data).map_err(|e| {
                anyhow!("hand-written consumer: entry {} is not JSON: {e}", entry.id)
            })?;
            std::hint::black_box(&order);
            let _: usize = conn.xack(stream, group, &[&entry.id]).await?;
            done += 1;
        }
        if done != before {
            progressed = Instant::now();
        } else if progressed.elapsed() > STALL_TIMEOUT {
            return Err(stalled("hand-written", done, target));
        }
    }
    let elapsed = meter.elapsed();
    let usage = meter.finish(&mut conn, elapsed).await;
    Ok(Run::new(
        "hand-written",
        format!("XREADGROUP COUNT {COUNT}, serde_json::Value parse, one XACK per entry"),
        done,
        &usage,
    ))
}
