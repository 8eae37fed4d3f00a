//! Redis plumbing for streams: connections, reply parsing, consumer-group
//! setup, and the Lua scripts that make multi-step operations atomic.

pub mod entry;
pub(crate) mod id;
pub(crate) mod resp;
pub(crate) mod scripts;
pub(crate) mod wire;

use crate::connection::Conn;

pub(crate) use entry::Entry;

/// Creates the consumer group at the start of the stream (and the stream)
/// when missing. Returns whether it had to be created.
pub(crate) async fn ensure_group(
    conn: &mut Conn,
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
pub(crate) async fn eviction_policy(conn: &mut Conn) -> Option<String> {
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
        assert_eq!(crate::config::redact("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(
            crate::config::redact("redis://u:pw@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(crate::config::redact("redis://h:1"), "redis://h:1");
    }
}
