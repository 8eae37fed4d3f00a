//! Where entries come from: implementations of
//! [`Source`](crate::pipeline::source::Source). Each reads deliveries its own
//! way, hands them to the pipeline's intake, and carries out the verdicts
//! with its own Redis commands.

pub(crate) mod letter;
pub(crate) mod list;
pub(crate) mod pubsub;
pub(crate) mod sorted_set;
pub(crate) mod stream;

use crate::config::{PluginConfig, SourceKind};

/// Refuses a plugin whose list or sorted-set key holds another type than
/// its source reads (a missing key is fine: producers create it). `run`
/// stops with it before consuming; `check` reports it.
pub async fn check_key_type<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    plugin: &PluginConfig,
) -> crate::Result<()> {
    let (key, wanted, shown) = match plugin.source() {
        SourceKind::List(key) => (key, "list", "list"),
        SourceKind::SortedSet(key, _) => (key, "zset", "sorted set"),
        SourceKind::Stream(_) | SourceKind::Subscribe(_) => return Ok(()),
    };
    let found: String = redis::cmd("TYPE").arg(key).query_async(conn).await?;
    if found == "none" || found == wanted {
        return Ok(());
    }
    Err(crate::Error::SourceKeyType {
        plugin: plugin.name.clone(),
        config_key: plugin.source().config_key(),
        key: key.to_owned(),
        found,
        wanted: shown,
    })
}
