//! The Lua scripts, loaded once and run with `EVALSHA` (redis-rs falls back to
//! `EVAL` when the server has not seen a script, e.g. after a restart).

use std::sync::LazyLock;

use redis::Script;

/// Finishes a dead-lettering inside the MULTI that added the DLQ entry: acks
/// the entry if this consumer still owns it, else removes the DLQ entry. Sent
/// as `EVAL` source, never `EVALSHA`: a `NOSCRIPT` inside the MULTI would let
/// the XADD through without its check.
pub(crate) const DEAD_LETTER: &str = include_str!("lua/dead_letter.lua");
/// Re-claim own pending entries for a retry, with their delivery counts.
pub(crate) static RECLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/reclaim.lua")));
/// One step of the claimer's walk: claim others' idle entries with their
/// delivery counts, report own idle ones.
pub(crate) static AUTOCLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/autoclaim.lua")));
/// Reset the idle time of own entries this host still holds (no delivery added).
pub(crate) static KEEP_ALIVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/keep_alive.lua")));
/// Remove idle consumers that own nothing.
pub(crate) static DELETE_IDLE_CONSUMERS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delete_idle_consumers.lua")));
/// Finishes a replay inside the MULTI that added the redelivery entry:
/// removes the dead letter, or the new entry when the dead letter is gone.
/// `EVAL` source, like [`DEAD_LETTER`].
pub(crate) const REPLAY: &str = include_str!("lua/replay.lua");
/// One step of a walk over a DLQ: the ids (and reasons) of the entries that
/// match a filter, without sending their bodies.
pub(crate) static DLQ_SCAN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/dlq_scan.lua")));
/// Commit an entry's effects with its ack.
pub(crate) static COMMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/commit.lua")));
/// Promote due scheduled entries to their streams.
pub(crate) static PROMOTE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/promote.lua")));
/// One round of a retention rule, never past what a group still needs.
pub(crate) static RETENTION_TRIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/retention_trim.lua")));
/// Make a stored component a plugin's current version and announce it.
pub(crate) static ACTIVATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/activate.lua")));
/// One heartbeat of a process using a consumer name.
pub(crate) static HEARTBEAT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/heartbeat.lua")));
