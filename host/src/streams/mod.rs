//! Redis plumbing for streams: connections, reply parsing, consumer-group
//! setup, and the Lua scripts that make multi-step operations atomic.

pub mod entry;
pub(crate) mod resp;
pub(crate) mod scripts;
pub(crate) mod wire;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

pub(crate) use crate::config::redact;
pub(crate) use entry::Entry;

/// Longest wait between reconnection attempts inside a connection manager.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// Opens a self-reconnecting connection, retrying by the host's
/// [`backoff`](crate::backoff) policy until
/// Redis answers or `shutdown` fires (then `None`). `response_timeout` must
/// exceed any `BLOCK` used on this connection.
pub(crate) async fn connect(
    url: &str,
    response_timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<Option<ConnectionManager>, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(response_timeout))
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(2)
        .set_max_delay(MAX_RECONNECT_DELAY);
    let mut backoff = crate::backoff::Backoff::new();
    let mut failures = 0u32;
    loop {
        match ConnectionManager::new_with_config(client.clone(), config.clone()).await {
            Ok(conn) => {
                if failures > 0 {
                    tracing::info!(url = %redact(url), "connected to Redis after {failures} failed attempts");
                }
                return Ok(Some(conn));
            }
            Err(e) => {
                failures += 1;
                // The first failure and then every 10th: an outage is one
                // line every ~50 s, not one per try.
                if failures % 10 == 1 {
                    tracing::warn!(url = %redact(url), error = %e, failures, "Redis unreachable; retrying with backoff");
                }
            }
        }
        if !backoff.wait(shutdown).await {
            return Ok(None);
        }
    }
}

/// Creates the consumer group at the start of the stream (and the stream)
/// when missing. Returns whether it had to be created.
pub(crate) async fn ensure_group(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
) -> Result<bool, redis::RedisError> {
    let created: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(false),
        Err(e) => Err(e),
    }
}

/// The server's `maxmemory-policy` when it may evict keys: any policy but
/// `noeviction` can drop a whole stream with its groups and pending entries.
/// `None` when it cannot evict, or when `CONFIG` is not available (managed
/// servers often rename it).
pub(crate) async fn eviction_policy(conn: &mut ConnectionManager) -> Option<String> {
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await
        .ok()?;
    reply.into_iter().nth(1).filter(|p| p != "noeviction")
}

/// Whether an error says the consumer group (or its stream) is gone.
pub(crate) fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// Whether Redis may take the same command later: the connection failed,
/// or the server is out of memory, loading, busy or failing over. Anything
/// else (a key of the wrong type, a script error) will fail again.
pub(crate) fn is_transient(e: &redis::RedisError) -> bool {
    is_connection_error(e)
        || matches!(
            e.code(),
            Some(
                "OOM"
                    | "BUSY"
                    | "LOADING"
                    | "TRYAGAIN"
                    | "MASTERDOWN"
                    | "CLUSTERDOWN"
                    | "READONLY"
                    | "NOREPLICAS"
                    | "MOVED"
                    | "ASK"
            )
        )
}

/// Whether an error is about the connection rather than the command.
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(super::redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(super::redact("redis://u:pw@h:1/0"), "redis://u:***@h:1/0");
        assert_eq!(super::redact("redis://h:1"), "redis://h:1");
    }
}
