//! Every Redis connection the host opens goes through here: one node or a
//! Redis Cluster behind one [`Conn`] for commands and scripts, and the URL of
//! the node owning a key's slot for the connections that block
//! (`XREADGROUP BLOCK`, `BLMOVE`, sharded Pub/Sub).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use tokio_util::sync::CancellationToken;

use crate::config::{RedisConfig, redact};

/// Longest wait between reconnection attempts inside a connection manager.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Hash slots in Redis Cluster.
pub const SLOTS: u16 = 16384;

/// Where Redis is: one node, or the seeds of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    urls: Arc<[String]>,
    cluster: bool,
}

/// A command connection: self-reconnecting to one node, or redis-rs's
/// cluster client (routes by key, follows `MOVED`/`ASK`, refreshes its slot
/// map on failover). Cheap to clone; clones share the connection.
#[derive(Clone)]
pub enum Conn {
    /// One node.
    Node(ConnectionManager),
    /// A cluster.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Endpoint {
    /// The `[redis]` table's endpoint: `urls` when given, else `url`.
    pub fn new(config: &RedisConfig) -> Endpoint {
        let urls: Vec<String> = if config.urls.is_empty() {
            vec![config.url.clone()]
        } else {
            config.urls.clone()
        };
        Endpoint {
            urls: urls.into(),
            cluster: config.cluster,
        }
    }

    /// One node at `url`.
    pub fn single(url: &str) -> Endpoint {
        Endpoint {
            urls: vec![url.to_owned()].into(),
            cluster: false,
        }
    }

    /// A cluster reached through `seeds`.
    pub fn cluster(seeds: &[String]) -> Endpoint {
        Endpoint {
            urls: seeds.to_vec().into(),
            cluster: true,
        }
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// The first URL (the one node, or the first seed).
    pub fn url(&self) -> &str {
        &self.urls[0]
    }

    /// The URLs, passwords hidden, for logs and errors.
    pub fn redacted(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(|u| redact(u)).collect();
        urls.join(", ")
    }

    /// Connects once; a cluster answers `CLUSTER SLOTS` through one of its
    /// seeds. `response_timeout` must exceed any `BLOCK` used on the connection.
    pub async fn connect_once(
        &self,
        response_timeout: Duration,
    ) -> Result<Conn, redis::RedisError> {
        if self.cluster {
            let client = redis::cluster::ClusterClient::builder(self.urls.iter().cloned())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(response_timeout)
                .retries(3)
                .build()?;
            let mut conn = client.get_async_connection().await?;
            // The client connects lazily to some nodes: make it prove the
            // cluster answers before we call it connected.
            let _: Value = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut conn)
                .await?;
            Ok(Conn::Cluster(conn))
        } else {
            let client = redis::Client::open(self.url())?;
            let config = ConnectionManagerConfig::new()
                .set_response_timeout(Some(response_timeout))
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_number_of_retries(2)
                .set_max_delay(MAX_RECONNECT_DELAY);
            Ok(Conn::Node(
                ConnectionManager::new_with_config(client, config).await?,
            ))
        }
    }

    /// Connects, retrying by the host's [`backoff`](crate::backoff) policy
    /// until Redis answers or `shutdown` fires (then `None`). A URL that
    /// cannot be a Redis URL is an error at once.
    pub(crate) async fn connect(
        &self,
        response_timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Conn>, redis::RedisError> {
        for url in self.urls.iter() {
            redis::Client::open(url.as_str())?;
        }
        let mut backoff = crate::backoff::Backoff::new();
        let mut failures = 0u32;
        loop {
            match self.connect_once(response_timeout).await {
                Ok(conn) => {
                    if failures > 0 {
                        tracing::info!(redis = %self.redacted(), "connected to Redis after {failures} failed attempts");
                    }
                    return Ok(Some(conn));
                }
                Err(e) => {
                    failures += 1;
                    // The first failure and then every 10th: an outage is one
                    // line every ~50 s, not one per try.
                    if failures % 10 == 1 {
                        tracing::warn!(redis = %self.redacted(), error = %e, failures, "Redis unreachable; retrying with backoff");
                    }
                }
            }
            if !backoff.wait(shutdown).await {
                return Ok(None);
            }
        }
    }

    /// The URL of the node that serves `key` now: the one node, or (on a
    /// cluster) the master owning the key's slot per `CLUSTER SLOTS`, with
    /// the first seed's credentials. Asked again after `MOVED`, `ASK` or a
    /// connection error, so a blocking connection follows failovers and
    /// slot migrations.
    pub(crate) async fn node_url(
        &self,
        conn: &mut Conn,
        key: &[u8],
    ) -> Result<String, redis::RedisError> {
        if !self.cluster {
            return Ok(self.url().to_owned());
        }
        let slots: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
        let (host, port) = slot_owner(&slots, slot(key)).ok_or_else(|| {
            redis::RedisError::from((
                redis::ErrorKind::ClusterConnectionNotFound,
                "no master serves the slot",
                format!("slot {} of {}", slot(key), String::from_utf8_lossy(key)),
            ))
        })?;
        Ok(with_address(self.url(), &host, port))
    }

    /// A self-reconnecting connection of its own for blocking commands on
    /// `key`: to the node serving `key` now (see [`Endpoint::node_url`]);
    /// on a cluster, drop it and call again after a redirect or a
    /// connection error. Retries with backoff until shutdown (then `None`).
    pub(crate) async fn connect_node(
        &self,
        commands: &mut Conn,
        key: &[u8],
        response_timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Option<Conn>, redis::RedisError> {
        let mut backoff = crate::backoff::Backoff::new();
        loop {
            match self.node_url(commands, key).await {
                Ok(url) => {
                    return Endpoint::single(&url)
                        .connect(response_timeout, shutdown)
                        .await;
                }
                Err(e) => {
                    tracing::debug!(redis = %self.redacted(), error = %e, "cannot find the node of a key; retrying")
                }
            }
            if !backoff.wait(shutdown).await {
                return Ok(None);
            }
        }
    }

    /// A URL to try for connection `attempt` (the seeds in turn), for a
    /// connection that may go to any node (classic Pub/Sub, which a cluster
    /// broadcasts to every node).
    pub(crate) fn any_url(&self, attempt: usize) -> &str {
        &self.urls[attempt % self.urls.len()]
    }
}

/// The hash slot of a key: CRC16 (XMODEM) of its hash tag, mod 16384.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// What Redis Cluster hashes: the bytes between the first `{` and the next
/// `}` when non-empty, else the whole key.
fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The master (host, port) serving `slot` in a `CLUSTER SLOTS` reply.
pub fn slot_owner(reply: &Value, slot: u16) -> Option<(String, u16)> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    ranges.iter().find_map(|range| {
        let Value::Array(fields) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return None;
        };
        if !(*start..=*end).contains(&i64::from(slot)) {
            return None;
        }
        let host = match master.first()? {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let Value::Int(port) = master.get(1)? else {
            return None;
        };
        Some((host, u16::try_from(*port).ok()?))
    })
}

/// `seed` with its host and port replaced (scheme, credentials kept; a
/// cluster has only database 0).
fn with_address(seed: &str, host: &str, port: u16) -> String {
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    let authority = rest.split('/').next().unwrap_or(rest);
    let credentials = authority.rsplit_once('@').map(|(c, _)| c);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match credentials {
        Some(c) => format!("{scheme}://{c}@{host}:{port}"),
        None => format!("{scheme}://{host}:{port}"),
    }
}

/// Whether an error tells a blocking connection to find the key's node again.
pub(crate) fn is_redirect(message: &str) -> bool {
    [
        "MOVED",
        "ASK",
        "CLUSTERDOWN",
        "TRYAGAIN",
        "READONLY",
        "MASTERDOWN",
    ]
    .iter()
    .any(|code| message.starts_with(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot(b"{}x"), crc16(b"{}x") % SLOTS);
    }

    #[test]
    fn node_urls_keep_credentials() {
        assert_eq!(
            with_address("redis://:pw@h:1/0", "10.0.0.2", 7001),
            "redis://:pw@10.0.0.2:7001"
        );
        assert_eq!(with_address("redis://h:1", "::1", 7), "redis://[::1]:7");
    }
}
