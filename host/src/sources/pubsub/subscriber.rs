//! The subscriber: a connection of its own (a subscribed connection takes
//! no other commands), `SUBSCRIBE` for the plugin's channels and
//! `PSUBSCRIBE` for its patterns, every message handed to intake as soon as
//! the read-ahead budget has room. When the connection is lost it
//! reconnects and resubscribes with the host's backoff, and counts the gap:
//! messages published meanwhile are gone (at-most-once).
//!
//! While the budget is spent (or the plugin is paused) no messages are read:
//! Redis buffers them, and past its `client-output-buffer-limit pubsub` it
//! closes the connection, which is then a gap like any other (bounded memory
//! on both sides).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::PubSubSource;
use super::source::Held;
use crate::backoff::Backoff;
use crate::pipeline::PluginContext;
use crate::pipeline::intake::Intake;

/// How long connecting and subscribing may take before it is tried again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a quiet subscription is checked with a `PING`: a connection cut
/// without a reset (a network partition) never ends the message stream, and
/// would otherwise be an uncounted gap for ever.
const PING_EVERY: Duration = Duration::from_secs(10);

/// Subscribes until shutdown, or until the work queue is closed.
pub(crate) async fn run(
    ctx: Arc<PluginContext>,
    source: Arc<PubSubSource>,
    redis: crate::connection::Endpoint,
    names: Vec<String>,
    intake: Intake<PubSubSource>,
    shutdown: CancellationToken,
) {
    let (patterns, channels): (Vec<&String>, Vec<&String>) = names
        .iter()
        .partition(|n| crate::config::is_channel_pattern(n));
    let mut backoff = Backoff::new();
    let mut lost_at: Option<tokio::time::Instant> = None;
    let mut attempt = 0;
    while !shutdown.is_cancelled() {
        // A cluster broadcasts classic Pub/Sub to every node, so any seed
        // serves; the seeds are tried in turn.
        let url = redis.any_url(attempt).to_owned();
        attempt += 1;
        let subscribed = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut pubsub = redis::Client::open(url.as_str())?
                .get_async_pubsub()
                .await?;
            for channel in &channels {
                pubsub.subscribe(channel.as_str()).await?;
            }
            for pattern in &patterns {
                pubsub.psubscribe(pattern.as_str()).await?;
            }
            Ok::<_, redis::RedisError>(pubsub)
        });
        let pubsub = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = subscribed => r,
        };
        let pubsub = match pubsub {
            Ok(Ok(pubsub)) => pubsub,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                ctx.redis_health.failed("subscribe", &error);
                if !backoff.wait(&shutdown).await {
                    break;
                }
                continue;
            }
        };
        ctx.redis_health.succeeded();
        backoff.reset();
        match lost_at.take() {
            Some(at) => {
                let gap = at.elapsed();
                ctx.metrics.resubscribed.inc();
                ctx.metrics.subscription_gap.inc_by(gap.as_secs_f64());
                tracing::warn!(plugin = %ctx.plugin.name, gap_ms = gap.as_millis() as u64,
                    "resubscribed after losing the Pub/Sub connection; messages published in the gap are gone");
            }
            None => {
                tracing::info!(plugin = %ctx.plugin.name, channels = channels.len(), patterns = patterns.len(), "subscribed");
            }
        }
        let (mut sink, mut messages) = pubsub.split();
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            if ctx.paused.is_paused() && !ctx.paused.wait_running(&shutdown).await {
                return;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = intake.read_ahead().room(1) => {}
            }
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = messages.next() => m,
                _ = ping.tick() => {
                    let answered = tokio::time::timeout(CONNECT_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if matches!(answered, Ok(Ok(_))) {
                        continue;
                    }
                    None
                }
            };
            let Some(message) = message else {
                lost_at = Some(tokio::time::Instant::now());
                tracing::warn!(plugin = %ctx.plugin.name, "Pub/Sub connection lost; resubscribing");
                break;
            };
            let held = Held {
                channel: message.get_channel::<Vec<u8>>().unwrap_or_default(),
                pattern: message
                    .from_pattern()
                    .then(|| message.get_pattern::<Vec<u8>>().ok())
                    .flatten(),
                payload: message.get_payload_bytes().to_vec(),
            };
            let delivery = source.delivery(held);
            if intake.submit(vec![delivery]).await.is_err() {
                return;
            }
        }
    }
}
