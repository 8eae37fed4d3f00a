//! Two hosts running one plugin under the same `consumer` name share its
//! pending entries without knowing: each replays, claims and acks the other's.
//! Every host beats a key per consumer name (a sorted set of process ids
//! scored by Redis's clock, expiring after [`TTL`]); a beat from another
//! process newer than this host's start means a live twin, and is logged as
//! an error when seen and every [`REPEAT`] while it lasts.

use std::time::Duration;

use redis::aio::ConnectionLike;
use tokio_util::sync::CancellationToken;

use crate::streams::scripts;

/// How often a host beats.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// How long a beat counts as alive: a few missed beats are tolerated.
pub(crate) const TTL: Duration = Duration::from_secs(10);
/// How often a lasting duplicate is logged again.
pub(crate) const REPEAT: Duration = Duration::from_secs(60);
/// Most beats read back: enough to name several twins, bounded whatever is stored.
const MAX_BEATS: usize = 16;

/// Who beats: one plugin's consumer in one group of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The plugin (for the log line).
    pub plugin: String,
    /// The source stream.
    pub stream: String,
    /// The consumer group.
    pub group: String,
    /// The consumer name shared by the twins.
    pub consumer: String,
}

impl Identity {
    /// The sorted set of the processes using this consumer name.
    pub(crate) fn key(&self) -> String {
        format!(
            "streamhost:heartbeat:{}:{}:{}",
            self.stream, self.group, self.consumer
        )
    }
}

/// This process among others: hostname, pid and a random part (pids repeat
/// across machines and containers).
pub(crate) fn process_id() -> String {
    format!(
        "{}-{:08x}",
        crate::config::default_consumer_name(),
        rand::random::<u32>()
    )
}

/// Beats until shutdown, then removes this process's beat.
pub(crate) async fn run<C: ConnectionLike + Send>(
    who: Identity,
    mut conn: C,
    health: std::sync::Arc<crate::redis_health::RedisHealth>,
    shutdown: CancellationToken,
) {
    let me = process_id();
    let key = who.key();
    let mut started_ms = None;
    let mut last_warned: Option<tokio::time::Instant> = None;
    loop {
        match beat(&mut conn, &key, &me).await {
            Ok((now, beats)) => {
                health.succeeded();
                let since = *started_ms.get_or_insert(now);
                let twins = twins(&beats, &me, since);
                if twins.is_empty() {
                    if last_warned.take().is_some() {
                        tracing::info!(plugin = %who.plugin, consumer = %who.consumer, "no other host uses this consumer name any more");
                    }
                } else if last_warned.is_none_or(|at| at.elapsed() >= REPEAT) {
                    last_warned = Some(tokio::time::Instant::now());
                    tracing::error!(
                        plugin = %who.plugin, stream = %who.stream, group = %who.group,
                        consumer = %who.consumer, this_host = %me, other_hosts = %twins.join(", "),
                        "ANOTHER HOST IS RUNNING WITH THE SAME CONSUMER NAME: both take this \
                         consumer's pending entries as their own and handle them twice; \
                         give every host its own `consumer` (or leave it unset for <hostname>-<pid>)"
                    );
                }
            }
            Err(e) if crate::redis_health::is_unreachable(&e) => health.failed("heartbeat", &e),
            Err(e) => {
                tracing::debug!(plugin = %who.plugin, error = %e, "heartbeat failed");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
    let _: Result<i64, _> = redis::cmd("ZREM")
        .arg(&key)
        .arg(&me)
        .query_async(&mut conn)
        .await;
}

/// One beat: Redis's time and every live beat as `(process, ms)`.
async fn beat<C: ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    me: &str,
) -> Result<(u64, Vec<(String, u64)>), redis::RedisError> {
    let (now, flat): (u64, Vec<String>) = scripts::HEARTBEAT
        .key(key)
        .arg(me)
        .arg(u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX))
        .arg(MAX_BEATS)
        .invoke_async(conn)
        .await?;
    // `WITHSCORES` from a script is flat: id, score, id, score, ...
    let beats = flat
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), pair[1].parse().unwrap_or(0)))
        .collect();
    Ok((now, beats))
}

/// Other processes that beat after `since` (this host's first beat): a
/// process that beat only before is a predecessor that died or stopped
/// (a restart under a stable consumer name), not a twin.
fn twins(beats: &[(String, u64)], me: &str, since: u64) -> Vec<String> {
    beats
        .iter()
        .filter(|(id, at)| id != me && *at > since)
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_beats_after_this_hosts_start_are_twins() {
        let beats = vec![
            ("old".to_owned(), 900),
            ("me".to_owned(), 1500),
            ("twin".to_owned(), 1200),
        ];
        assert_eq!(twins(&beats, "me", 1000), vec!["twin".to_owned()]);
        assert!(twins(&beats, "me", 1300).is_empty());
    }
}
