//! Deployed versions of plugins, kept in Redis: components stored by content
//! digest, a numbered record of every deploy and rollback, the current
//! version per plugin, an announcement channel, and refusals reported by hosts.
//!
//! Keys of one plugin share the hash tag `{streamhost:deploy:<plugin>}` so the
//! activation script touches one slot; component blobs are stored apart.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;

use crate::error::{Error, RollbackError};
use crate::streams::scripts;

/// The Redis keys of one plugin's deployments.
pub struct DeployKeys {
    /// Stream of version records.
    pub versions: String,
    /// Hash: `version`, `digest` of the current version, `seq`.
    pub current: String,
    /// Stream of refusals reported by hosts.
    pub refusals: String,
    /// Pub/Sub channel announcing new versions.
    pub channel: String,
}

impl DeployKeys {
    /// The keys for `plugin`.
    pub fn new(plugin: &str) -> DeployKeys {
        let tag = format!("{{streamhost:deploy:{plugin}}}");
        DeployKeys {
            versions: format!("{tag}:versions"),
            current: format!("{tag}:current"),
            refusals: format!("{tag}:refusals"),
            channel: format!("streamhost:deploy:{plugin}"),
        }
    }
}

/// Where a component's bytes are stored.
pub fn component_key(digest: &str) -> String {
    format!("streamhost:component:{digest}")
}

/// One deploy or rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// 1, 2, 3, ... per plugin.
    pub version: u64,
    /// `sha256:<hex>` of the component.
    pub digest: String,
    /// Who deployed it.
    pub by: String,
    /// `deploy` or `rollback to N`.
    pub action: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// A host's refusal of a candidate version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The refusing host's consumer name.
    pub host: String,
    /// The refused digest.
    pub digest: String,
    /// Why.
    pub error: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Stores a (validated) component and makes it the plugin's current version.
pub async fn deploy<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    bytes: &[u8],
    by: &str,
) -> Result<Version, Error> {
    let digest = crate::plugin::digest(bytes);
    let _: () = redis::cmd("SET")
        .arg(component_key(&digest))
        .arg(bytes)
        .query_async(conn)
        .await?;
    activate(conn, plugin, &digest, by, "deploy").await
}

/// Makes an older version current again (default: the one before the current).
pub async fn rollback<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    to: Option<u64>,
    by: &str,
) -> Result<Version, Error> {
    let history = versions(conn, plugin).await?;
    let current = history.last().ok_or_else(|| RollbackError::NoVersions {
        plugin: plugin.to_owned(),
    })?;
    let target = match to {
        Some(n) => history.iter().find(|v| v.version == n),
        None => history.iter().rev().find(|v| v.digest != current.digest),
    }
    .ok_or_else(|| match to {
        Some(version) => RollbackError::NoSuchVersion {
            plugin: plugin.to_owned(),
            version,
        },
        None => RollbackError::NoEarlierVersion {
            plugin: plugin.to_owned(),
        },
    })?
    .clone();
    let exists: bool = redis::cmd("EXISTS")
        .arg(component_key(&target.digest))
        .query_async(conn)
        .await?;
    if !exists {
        return Err(RollbackError::ComponentGone {
            plugin: plugin.to_owned(),
            version: target.version,
        }
        .into());
    }
    activate(
        conn,
        plugin,
        &target.digest,
        by,
        &format!("rollback to {}", target.version),
    )
    .await
}

async fn activate<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    digest: &str,
    by: &str,
    action: &str,
) -> Result<Version, Error> {
    let keys = DeployKeys::new(plugin);
    let at_ms = now_ms();
    let version: u64 = scripts::ACTIVATE
        .key(&keys.versions)
        .key(&keys.current)
        .arg(digest)
        .arg(by)
        .arg(action)
        .arg(at_ms)
        .arg(&keys.channel)
        .invoke_async(conn)
        .await?;
    Ok(Version {
        version,
        digest: digest.to_owned(),
        by: by.to_owned(),
        action: action.to_owned(),
        at_ms,
    })
}

/// The current version, if the plugin was ever deployed.
pub async fn current<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
) -> Result<Option<(u64, String)>, Error> {
    let fields: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(DeployKeys::new(plugin).current)
        .query_async(conn)
        .await?;
    Ok(
        match (
            fields.get("version").and_then(|v| v.parse().ok()),
            fields.get("digest"),
        ) {
            (Some(v), Some(d)) => Some((v, d.clone())),
            _ => None,
        },
    )
}

/// Every deploy and rollback, oldest first.
pub async fn versions<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
) -> Result<Vec<Version>, Error> {
    let rows = records(conn, &DeployKeys::new(plugin).versions).await?;
    Ok(rows
        .iter()
        .map(|r| Version {
            version: r.number("version"),
            digest: r.text("digest"),
            by: r.text("by"),
            action: r.text("action"),
            at_ms: r.number("at-ms"),
        })
        .collect())
}

/// One entry of a record stream (versions, refusals), by field name.
struct Record(HashMap<String, String>);

impl Record {
    fn text(&self, field: &str) -> String {
        self.0.get(field).cloned().unwrap_or_default()
    }
    fn number(&self, field: &str) -> u64 {
        self.0.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
    }
}

async fn records<C: ConnectionLike + Send>(conn: &mut C, key: &str) -> Result<Vec<Record>, Error> {
    let rows: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await?;
    Ok(rows.into_iter().map(|(_, fields)| Record(fields)).collect())
}

/// A stored component's bytes.
pub async fn fetch_component<C: ConnectionLike + Send>(
    conn: &mut C,
    digest: &str,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(redis::cmd("GET")
        .arg(component_key(digest))
        .query_async(conn)
        .await?)
}

/// Records that a host refused a candidate (kept to the last 1000).
pub async fn record_refusal<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    host: &str,
    digest: &str,
    error: &str,
) -> Result<(), Error> {
    let _: String = redis::cmd("XADD")
        .arg(DeployKeys::new(plugin).refusals)
        .arg("MAXLEN")
        .arg("~")
        .arg(1000)
        .arg("*")
        .arg("host")
        .arg(host)
        .arg("digest")
        .arg(digest)
        .arg("error")
        .arg(error)
        .arg("at-ms")
        .arg(now_ms())
        .query_async(conn)
        .await?;
    Ok(())
}

/// Refusals, oldest first.
pub async fn refusals<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
) -> Result<Vec<Refusal>, Error> {
    let rows = records(conn, &DeployKeys::new(plugin).refusals).await?;
    Ok(rows
        .iter()
        .map(|r| Refusal {
            host: r.text("host"),
            digest: r.text("digest"),
            error: r.text("error"),
            at_ms: r.number("at-ms"),
        })
        .collect())
}
