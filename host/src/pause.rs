//! Pausing a plugin on every host: a flag in Redis beside the plugin's deploy
//! records (`{streamhost:deploy:<plugin>}:paused`, a hash saying who paused it
//! and when), announced on the deploy channel so hosts react at once; the
//! swapper also polls it, so a missed announcement costs one poll interval.
//! While paused, a host's reader and claimer take no new entries; entries
//! already read (and their retries) finish.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::deploy::DeployKeys;
use crate::error::Error;

/// The Redis key holding a plugin's pause record.
pub fn key(plugin: &str) -> String {
    format!("{{streamhost:deploy:{plugin}}}:paused")
}

/// Who paused a plugin, and when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Paused {
    /// Who paused it (as logged by the dashboard or CLI).
    pub by: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Why, when the circuit breaker paused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When any host resumes it (Unix ms), for a circuit breaker's pause.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_at_ms: Option<u64>,
}

/// The `by` of a pause the circuit breaker made.
pub const BREAKER: &str = "circuit-breaker";

/// Pauses `plugin` on every host for the circuit breaker until
/// `resume_at_ms`, unless it is paused already (an operator's pause is
/// never replaced). Returns whether this call paused it.
pub async fn trip<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    reason: &str,
    resume_at_ms: u64,
) -> Result<bool, Error> {
    static TRIP: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'by', ARGV[1], 'at-ms', ARGV[2], 'reason', ARGV[3], 'resume-at-ms', ARGV[4])
redis.call('PUBLISH', ARGV[5], 'paused')
return 1
",
        )
    });
    let paused: i64 = TRIP
        .key(key(plugin))
        .arg(BREAKER)
        .arg(now_ms())
        .arg(reason)
        .arg(resume_at_ms)
        .arg(DeployKeys::new(plugin).channel)
        .invoke_async(conn)
        .await?;
    Ok(paused == 1)
}

/// Resumes a circuit breaker's pause that is due (its `resume-at-ms` is
/// `due_ms`, as read); of several hosts, one does it. Returns whether this
/// call resumed it.
pub async fn resume_due<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    due_ms: u64,
) -> Result<bool, Error> {
    static RESUME: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"
if redis.call('HGET', KEYS[1], 'resume-at-ms') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[2], 'resumed')
return 1
",
        )
    });
    let resumed: i64 = RESUME
        .key(key(plugin))
        .arg(due_ms)
        .arg(DeployKeys::new(plugin).channel)
        .invoke_async(conn)
        .await?;
    Ok(resumed == 1)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Pauses `plugin` on every host.
pub async fn pause<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    by: &str,
) -> Result<Paused, Error> {
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // An operator's pause replaces a circuit breaker's: no resume when due.
    let _: () = redis::pipe()
        .atomic()
        .hdel(key(plugin), &["reason", "resume-at-ms"])
        .ignore()
        .hset_multiple(
            key(plugin),
            &[("by", by.to_owned()), ("at-ms", at_ms.to_string())],
        )
        .ignore()
        .publish(DeployKeys::new(plugin).channel, "paused")
        .ignore()
        .query_async(conn)
        .await?;
    Ok(Paused {
        by: by.to_owned(),
        at_ms,
        reason: None,
        resume_at_ms: None,
    })
}

/// Resumes `plugin` on every host; returns whether it was paused.
pub async fn resume<C: ConnectionLike + Send>(conn: &mut C, plugin: &str) -> Result<bool, Error> {
    let (removed,): (u64,) = redis::pipe()
        .del(key(plugin))
        .publish(DeployKeys::new(plugin).channel, "resumed")
        .ignore()
        .query_async(conn)
        .await?;
    Ok(removed > 0)
}

/// The pause record, `None` while the plugin runs.
pub async fn status<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
) -> Result<Option<Paused>, Error> {
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(key(plugin))
        .query_async(conn)
        .await?;
    if fields.is_empty() {
        return Ok(None);
    }
    Ok(Some(Paused {
        by: fields.get("by").cloned().unwrap_or_default(),
        at_ms: fields
            .get("at-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        reason: fields.get("reason").cloned(),
        resume_at_ms: fields.get("resume-at-ms").and_then(|v| v.parse().ok()),
    }))
}

/// A host's local copy of the flag, shared by one plugin's tasks.
pub struct PauseFlag {
    paused: watch::Sender<bool>,
}

impl Default for PauseFlag {
    fn default() -> Self {
        PauseFlag {
            paused: watch::Sender::new(false),
        }
    }
}

impl PauseFlag {
    /// Sets the flag; returns whether it changed.
    pub fn set(&self, paused: bool) -> bool {
        self.paused
            .send_if_modified(|p| std::mem::replace(p, paused) != paused)
    }

    /// Whether the plugin is paused.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Waits while paused; `false` when `shutdown` fired first.
    pub async fn wait_running(&self, shutdown: &CancellationToken) -> bool {
        let mut rx = self.paused.subscribe();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            r = rx.wait_for(|p| !*p) => r.is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_ends_on_resume_or_shutdown() {
        let flag = std::sync::Arc::new(PauseFlag::default());
        let stop = CancellationToken::new();
        assert!(flag.wait_running(&stop).await, "not paused: no wait");
        assert!(flag.set(true));
        assert!(!flag.set(true), "unchanged");
        let waiter = {
            let (flag, stop) = (flag.clone(), stop.clone());
            tokio::spawn(async move { flag.wait_running(&stop).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        flag.set(false);
        assert!(waiter.await.unwrap());
        flag.set(true);
        stop.cancel();
        assert!(!flag.wait_running(&stop).await);
    }
}
