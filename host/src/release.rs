//! A plugin's release in progress, kept in Redis beside its deployed
//! versions: the candidate a canary routes a share of entries to (`deploy
//! --canary`) or a shadow runs on copies of them (`deploy --shadow`), its
//! promotion (`promote`), its end by an operator (`rollback`) or by a host
//! that saw a canary fail more than the stable version (automatic rollback,
//! decided once for every host by a script); and the shadow's report.
//!
//! One hash per plugin, `{streamhost:deploy:<plugin>}:release`, announced on
//! the plugin's deploy channel so hosts act at once (they also poll).

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;
use redis::aio::ConnectionLike;
use sha2::{Digest, Sha256};

use crate::deploy::{self, Activated, DeployKeys, component_key, now_ms};
use crate::error::{DeployError, Error};

/// Parts per million: the unit of a canary's share.
pub const PPM: u32 = 1_000_000;

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Hosts route the share to the candidate.
    Active,
    /// The candidate became the current version.
    Promoted,
    /// An operator ended it (`rollback`).
    Ended,
    /// A host saw the candidate fail more than the stable version; every
    /// host stopped routing to it.
    RolledBack,
}

impl State {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Promoted => "promoted",
            State::Ended => "ended",
            State::RolledBack => "rolled-back",
        }
    }

    fn parse(s: &str) -> Option<State> {
        [
            State::Active,
            State::Promoted,
            State::Ended,
            State::RolledBack,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// How a candidate is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// It handles a share of the entries.
    Canary,
    /// It runs on a copy of each entry after the current version handled
    /// it; its outcome and effects are compared, never committed.
    Shadow,
}

impl Mode {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Canary => "canary",
            Mode::Shadow => "shadow",
        }
    }
}

/// A candidate version being tried on a plugin's entries: a canary or a shadow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// Canary or shadow.
    pub mode: Mode,
    /// `sha256:<hex>` of the candidate component.
    pub digest: String,
    /// Its share of entries, in parts per million.
    pub share_ppm: u32,
    /// Mixed into the routing hash, new per deploy, so producers cannot
    /// choose ids (or keys) that all land on the candidate.
    pub seed: String,
    /// Where it stands.
    pub state: State,
    /// Who started it.
    pub by: String,
    /// When it started (Unix ms).
    pub at_ms: u64,
    /// Who or what ended it, and why (empty while active).
    pub ended: String,
    /// When it ended (Unix ms; 0 while active).
    pub ended_ms: u64,
}

/// Whether the entry with routing key `key` (its id, or its ordering key)
/// goes to a canary of `share_ppm` deployed with `seed`: a keyed hash, so
/// the same key always lands on the same version and producers, who do not
/// know the seed, cannot aim entries at the candidate.
pub fn takes_candidate(seed: &str, share_ppm: u32, key: &[u8]) -> bool {
    let mut h = Sha256::new();
    h.update((seed.len() as u64).to_le_bytes());
    h.update(seed.as_bytes());
    h.update(key);
    let hash = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(first) % u64::from(PPM) < u64::from(share_ppm)
}

fn key(plugin: &str) -> String {
    format!(
        "{}:release",
        DeployKeys::new(plugin)
            .versions
            .trim_end_matches(":versions")
    )
}

/// Stores the candidate and starts routing `share_ppm` of the plugin's
/// entries to it on every host (replacing any earlier canary or shadow).
pub async fn start_canary<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    bytes: &[u8],
    share_ppm: u32,
    by: &str,
) -> Result<Canary, Error> {
    if share_ppm == 0 || share_ppm > PPM {
        return Err(DeployError::CanaryShare(share_ppm).into());
    }
    start(conn, plugin, bytes, Mode::Canary, share_ppm, by).await
}

/// Stores the candidate and starts running it on every host on a copy of
/// each entry the current version handled (replacing any earlier canary
/// or shadow; the shadow report starts afresh).
pub async fn start_shadow<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    bytes: &[u8],
    by: &str,
) -> Result<Canary, Error> {
    start(conn, plugin, bytes, Mode::Shadow, 0, by).await
}

async fn start<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    bytes: &[u8],
    mode: Mode,
    share_ppm: u32,
    by: &str,
) -> Result<Canary, Error> {
    let digest = crate::plugin::digest(bytes);
    if deploy::current(conn, plugin)
        .await?
        .is_some_and(|(_, d)| d == digest)
    {
        return Err(DeployError::CanaryIsCurrent {
            plugin: plugin.to_owned(),
            digest,
        }
        .into());
    }
    let _: () = redis::cmd("SET")
        .arg(component_key(&digest))
        .arg(bytes)
        .query_async(conn)
        .await?;
    let canary = Canary {
        mode,
        digest,
        share_ppm,
        seed: hex::encode(rand::random::<[u8; 16]>()),
        state: State::Active,
        by: by.to_owned(),
        at_ms: now_ms(),
        ended: String::new(),
        ended_ms: 0,
    };
    let keys = ShadowKeys::new(plugin);
    let mut pipe = redis::pipe();
    pipe.atomic()
        .del(key(plugin))
        .ignore()
        .del(&[keys.stats, keys.examples])
        .ignore()
        .hset_multiple(
            key(plugin),
            &[
                ("mode", mode.as_str().to_owned()),
                ("digest", canary.digest.clone()),
                ("share-ppm", canary.share_ppm.to_string()),
                ("seed", canary.seed.clone()),
                ("state", canary.state.as_str().to_owned()),
                ("by", canary.by.clone()),
                ("at-ms", canary.at_ms.to_string()),
            ],
        )
        .ignore()
        .publish(DeployKeys::new(plugin).channel, &canary.digest)
        .ignore();
    let () = pipe.query_async(conn).await?;
    Ok(canary)
}

/// The plugin's latest canary, whatever its state.
pub async fn canary<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
) -> Result<Option<Canary>, Error> {
    let f: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(key(plugin))
        .query_async(conn)
        .await?;
    let text = |n: &str| f.get(n).cloned().unwrap_or_default();
    let number = |n: &str| f.get(n).and_then(|v| v.parse().ok()).unwrap_or(0);
    let (Some(state), false) = (State::parse(&text("state")), text("digest").is_empty()) else {
        return Ok(None);
    };
    let mode = match text("mode").as_str() {
        "shadow" => Mode::Shadow,
        _ => Mode::Canary,
    };
    Ok(Some(Canary {
        mode,
        digest: text("digest"),
        share_ppm: u32::try_from(number("share-ppm")).unwrap_or(0),
        seed: text("seed"),
        state,
        by: text("by"),
        at_ms: number("at-ms"),
        ended: text("ended"),
        ended_ms: number("ended-ms"),
    }))
}

/// Ends an active canary: `to` is the state it ends in, `why` who/what and
/// why. Only the canary of `digest` (any, when `None`) that is still
/// active changes: of several hosts deciding at once, one wins. Returns
/// whether this call ended it.
static END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'state') ~= 'active' then return 0 end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'digest') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'ended', ARGV[3], 'ended-ms', ARGV[4])
redis.call('PUBLISH', ARGV[5], 'release')
return 1
",
    )
});

async fn end<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    digest: Option<&str>,
    to: State,
    why: &str,
) -> Result<bool, Error> {
    let ended: i64 = END
        .key(key(plugin))
        .arg(digest.unwrap_or(""))
        .arg(to.as_str())
        .arg(why)
        .arg(now_ms())
        .arg(DeployKeys::new(plugin).channel)
        .invoke_async(conn)
        .await?;
    Ok(ended == 1)
}

/// Ends the running canary or shadow (`streamhost rollback` while one
/// runs): every host routes all entries to the current version again and
/// stops shadowing.
pub async fn end_canary<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    by: &str,
) -> Result<Canary, Error> {
    let no_canary = || DeployError::NoCanary {
        plugin: plugin.to_owned(),
    };
    let running = canary(conn, plugin)
        .await?
        .filter(|c| c.state == State::Active)
        .ok_or_else(no_canary)?;
    if !end(
        conn,
        plugin,
        Some(&running.digest),
        State::Ended,
        &format!("ended by {by}"),
    )
    .await?
    {
        return Err(no_canary().into());
    }
    Ok(running)
}

/// Records a host's decision that the candidate `digest` fails too often:
/// every host stops routing to it. Returns whether this host's call made
/// the decision (the others found it made).
pub async fn roll_back_automatically<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    digest: &str,
    why: &str,
) -> Result<bool, Error> {
    end(conn, plugin, Some(digest), State::RolledBack, why).await
}

/// Makes the running canary's (or shadow's) candidate the current version
/// (recorded as `promote canary` or `promote shadow`); hosts swap to it and
/// the canary or shadow ends.
pub async fn promote<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    by: &str,
) -> Result<Activated, Error> {
    let running = canary(conn, plugin)
        .await?
        .filter(|c| c.state == State::Active)
        .ok_or_else(|| DeployError::NoCanary {
            plugin: plugin.to_owned(),
        })?;
    // Current first: between the two steps a host sees a canary of the
    // current version, which routes nothing anywhere else.
    let action = format!("promote {}", running.mode.as_str());
    let activated = deploy::activate(conn, plugin, &running.digest, by, &action, true).await?;
    end(
        conn,
        plugin,
        Some(&running.digest),
        State::Promoted,
        &format!("promoted by {by}"),
    )
    .await?;
    Ok(activated)
}

/// The Redis keys of a plugin's shadow report.
pub struct ShadowKeys {
    /// Hash of counts: `compared`, `differ`, `dropped`, `failed`.
    pub stats: String,
    /// Stream of examples that differ (the newest [`SHADOW_EXAMPLES`]).
    pub examples: String,
}

/// Differing examples kept per shadow.
pub const SHADOW_EXAMPLES: usize = 1000;

impl ShadowKeys {
    /// The keys for `plugin`.
    pub fn new(plugin: &str) -> ShadowKeys {
        let tag = key(plugin);
        let tag = tag.trim_end_matches(":release");
        ShadowKeys {
            stats: format!("{tag}:shadow"),
            examples: format!("{tag}:shadow-examples"),
        }
    }
}

/// One entry on which the candidate and the current version differ.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShadowExample {
    /// The entry's id.
    pub id: String,
    /// The host that compared them.
    pub host: String,
    /// What the current version came to, and its effects (escaped text).
    pub stable: String,
    /// What the candidate came to, and its effects (escaped text).
    pub candidate: String,
}

/// A shadow's report: counts over every host, and the differing examples.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShadowReport {
    /// Entries both versions handled.
    pub compared: u64,
    /// Of those, where outcome or effects differ.
    pub differ: u64,
    /// Copies dropped because a host's shadow queue was full.
    pub dropped: u64,
    /// The newest differing examples, oldest first.
    pub examples: Vec<ShadowExample>,
}

/// Adds a host's counts to the shadow report and records its examples.
pub async fn record_shadow<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
    compared: u64,
    differ: u64,
    dropped: u64,
    examples: &[ShadowExample],
) -> Result<(), Error> {
    let keys = ShadowKeys::new(plugin);
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (field, n) in [
        ("compared", compared),
        ("differ", differ),
        ("dropped", dropped),
    ] {
        if n > 0 {
            pipe.hincr(&keys.stats, field, n).ignore();
        }
    }
    for e in examples {
        pipe.cmd("XADD")
            .arg(&keys.examples)
            .arg("MAXLEN")
            .arg("~")
            .arg(SHADOW_EXAMPLES)
            .arg("*")
            .arg("id")
            .arg(&e.id)
            .arg("host")
            .arg(&e.host)
            .arg("stable")
            .arg(&e.stable)
            .arg("candidate")
            .arg(&e.candidate)
            .ignore();
    }
    let () = pipe.query_async(conn).await?;
    Ok(())
}

/// The shadow report of `plugin` (of its latest shadow).
pub async fn shadow_report<C: ConnectionLike + Send>(
    conn: &mut C,
    plugin: &str,
) -> Result<ShadowReport, Error> {
    let keys = ShadowKeys::new(plugin);
    let stats: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg(&keys.stats)
        .query_async(conn)
        .await?;
    let rows: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg(&keys.examples)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await?;
    let field = |f: &HashMap<String, String>, n: &str| f.get(n).cloned().unwrap_or_default();
    Ok(ShadowReport {
        compared: stats.get("compared").copied().unwrap_or(0),
        differ: stats.get("differ").copied().unwrap_or(0),
        dropped: stats.get("dropped").copied().unwrap_or(0),
        examples: rows
            .into_iter()
            .map(|(_, f)| ShadowExample {
                id: field(&f, "id"),
                host: field(&f, "host"),
                stable: field(&f, "stable"),
                candidate: field(&f, "candidate"),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_kept_and_depends_on_the_seed() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("{i}-0")).collect();
        let taken: Vec<bool> = ids
            .iter()
            .map(|id| takes_candidate("one", 100_000, id.as_bytes()))
            .collect();
        let share = taken.iter().filter(|t| **t).count();
        assert!((1_800..=2_200).contains(&share), "{share}");
        let same = ids
            .iter()
            .zip(&taken)
            .filter(|(id, t)| takes_candidate("two", 100_000, id.as_bytes()) == **t)
            .count();
        assert!(same < 19_000, "another seed routes other entries: {same}");
        assert!(
            ids.iter()
                .all(|id| !takes_candidate("one", 0, id.as_bytes()))
        );
        assert!(
            ids.iter()
                .all(|id| takes_candidate("one", PPM, id.as_bytes()))
        );
    }
}
