//! Deployed versions of plugins, kept in Redis: components stored by content
//! digest, a numbered record of every deploy and rollback, the current
//! version per plugin, an announcement channel, and refusals reported by hosts.
//!
//! Keys of one plugin share the hash tag `{streamhost:deploy:<plugin>}` so the
//! activation script touches one slot; component blobs are stored apart.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionLike;

use crate::error::{DeployError, Error};
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

/// What a deploy or rollback left current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activated {
    /// The plugin's current version number.
    pub version: u64,
    /// `sha256:<hex>` of its component.
    pub digest: String,
    /// Whether a new version was recorded: a deploy of the digest that is
    /// already current changes nothing.
    pub created: bool,
}

/// Redis set of every plugin name a host has run: `deploy` of a name outside
/// it (and never deployed) needs `--create`, so a typo does not start a
/// version history no host will ever follow.
pub const KNOWN_PLUGINS: &str = "streamhost:plugins";

/// Records that a host runs `plugin` (see [`KNOWN_PLUGINS`]).
pub async fn register_plugin<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
) -> Result<(), Error> {
    let _: i64 = redis::cmd("SADD")
        .arg(KNOWN_PLUGINS)
        .arg(plugin)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Whether any host ever ran `plugin`, or it was ever deployed.
pub async fn is_known<C: ConnectionLike + Send>(conn: &mut C, plugin: &str) -> Result<bool, Error> {
    let ran: bool = redis::cmd("SISMEMBER")
        .arg(KNOWN_PLUGINS)
        .arg(plugin)
        .query_async(conn)
        .await?;
    Ok(ran || current(conn, plugin).await?.is_some())
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

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Stores a (validated) component and makes it the plugin's current version,
/// unless it already is (then nothing is recorded or announced).
pub async fn deploy<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    bytes: &[u8],
    by: &str,
) -> Result<Activated, Error> {
    let digest = crate::plugin::digest(bytes);
    let _: () = redis::cmd("SET")
        .arg(component_key(&digest))
        .arg(bytes)
        .query_async(conn)
        .await?;
    activate(conn, plugin, &digest, by, "deploy", true).await
}

/// Makes an older version current again, as a new version number that
/// records `rollback to N`. `to`: version N; `None`: the newest version whose
/// component differs from the current one (so rolling back twice returns to
/// where the first rollback started, and redeploys of one digest are skipped).
pub async fn rollback<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    to: Option<u64>,
    by: &str,
) -> Result<Version, Error> {
    let history = versions(conn, plugin).await?;
    let target = pick_rollback(plugin, &history, to)?.clone();
    let exists: bool = redis::cmd("EXISTS")
        .arg(component_key(&target.digest))
        .query_async(conn)
        .await?;
    if !exists {
        return Err(DeployError::ComponentGone {
            plugin: plugin.to_owned(),
            version: target.version,
        }
        .into());
    }
    let action = format!("rollback to {}", target.version);
    let done = activate(conn, plugin, &target.digest, by, &action, false).await?;
    Ok(Version {
        version: done.version,
        digest: done.digest,
        by: by.to_owned(),
        action,
        at_ms: now_ms(),
    })
}

/// The version a rollback returns to (see [`rollback`]).
fn pick_rollback<'h>(
    plugin: &str,
    history: &'h [Version],
    to: Option<u64>,
) -> Result<&'h Version, DeployError> {
    let plugin = plugin.to_owned();
    let Some(current) = history.last() else {
        return Err(DeployError::NeverDeployed { plugin });
    };
    match to {
        Some(version) => history
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| DeployError::NoSuchVersion {
                plugin,
                version,
                known: format!("1 to {}", current.version),
            }),
        None => history
            .iter()
            .rev()
            .find(|v| v.digest != current.digest)
            .ok_or(DeployError::NoEarlierVersion { plugin }),
    }
}

pub(crate) async fn activate<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    digest: &str,
    by: &str,
    action: &str,
    only_if_changed: bool,
) -> Result<Activated, Error> {
    let keys = DeployKeys::new(plugin);
    let (version, created): (u64, u8) = scripts::ACTIVATE
        .key(&keys.versions)
        .key(&keys.current)
        .arg(digest)
        .arg(by)
        .arg(action)
        .arg(now_ms())
        .arg(&keys.channel)
        .arg(if only_if_changed { "1" } else { "0" })
        .invoke_async(conn)
        .await?;
    Ok(Activated {
        version,
        digest: digest.to_owned(),
        created: created == 1,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn v(version: u64, digest: &str) -> Version {
        Version {
            version,
            digest: digest.to_owned(),
            by: "t".to_owned(),
            action: "deploy".to_owned(),
            at_ms: 0,
        }
    }

    #[test]
    fn rollback_picks_the_newest_version_with_another_component() {
        let history = [v(1, "a"), v(2, "b"), v(3, "b"), v(4, "c")];
        assert_eq!(pick_rollback("p", &history, None).unwrap().version, 3);
        let back = [v(1, "a"), v(2, "b"), v(3, "a")];
        assert_eq!(pick_rollback("p", &back, None).unwrap().version, 2);
        assert_eq!(pick_rollback("p", &history, Some(1)).unwrap().version, 1);
    }

    #[test]
    fn rollback_to_nothing_is_a_typed_bad_input() {
        let history = [v(1, "a"), v(2, "a")];
        let err = pick_rollback("p", &history, Some(7)).unwrap_err();
        assert!(err.to_string().contains("no version 7"), "{err}");
        assert!(err.to_string().contains("1 to 2"), "{err}");
        assert!(Error::from(err).is_bad_input());
        let err = pick_rollback("p", &history, None).unwrap_err();
        assert!(matches!(err, DeployError::NoEarlierVersion { .. }), "{err}");
        let err = pick_rollback("p", &[], None).unwrap_err();
        assert!(matches!(err, DeployError::NeverDeployed { .. }), "{err}");
    }
}
