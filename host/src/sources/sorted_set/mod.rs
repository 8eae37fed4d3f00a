//! The sorted-set queue source: members of a sorted set handed out lowest
//! score first (`order = "priority"`) or no earlier than their score as a
//! Unix-ms due time (`order = "due"`). One script pops a member and marks it
//! in flight (an in-flight sorted set scored by a visibility deadline), so
//! there is never a moment where a member is in neither; a member whose
//! deadline passes (its host died) goes back to the queue with its score.
//!
//! ```text
//! popper (pop script) ─► intake ─► workers ─► settle ─► source ┬─► ok: ZREM in flight (with effects: the commit script)
//! keeper: expired in flight → queue;                           ├─► retry: after the backoff, back with its own score
//!         held members' deadlines pushed out                   └─► reject / exhausted: ZREM + XADD to the DLQ (one script)
//! ```
//!
//! A member's delivery count lives in the plugin's meta hash
//! (`<set>:meta:<plugin>`, member → `<deliveries>:<refused>:<score>`):
//! sorted-set members are unique, so unlike a list's items they can be keys.
//! That value is also the delivery's token: a settle only acts while the
//! meta hash still names this delivery.

pub(crate) mod keeper;
pub(crate) mod popper;
pub(crate) mod source;

use std::sync::{Arc, LazyLock};

use redis::Script;

pub(crate) use source::SortedSetSource;

/// Pop and mark in flight.
pub(crate) static POP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/pop.lua")));
/// Ack, requeue or extend held members.
pub(crate) static SETTLE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/settle.lua")));
/// Return expired in-flight members.
pub(crate) static EXPIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/expire.lua")));
/// Remove a held member and dead-letter it, atomically.
pub(crate) static DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/dead_letter.lua")));

/// The Redis keys of one plugin's sorted-set queue, named after the queue so
/// they share its Redis Cluster hash tag.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The queue producers `ZADD` to.
    pub(crate) queue: Arc<str>,
    /// Members handed out, scored by their visibility deadline (Unix ms).
    pub(crate) inflight: String,
    /// Member → delivery token.
    pub(crate) meta: String,
}

impl Keys {
    /// The keys of `plugin` on `queue`.
    pub(crate) fn new(queue: &str, plugin: &str) -> Keys {
        Keys {
            queue: Arc::from(queue),
            inflight: format!("{queue}:inflight:{plugin}"),
            meta: format!("{queue}:meta:{plugin}"),
        }
    }
}

/// What a delivery's token says: `<deliveries>:<refused>:<score>`.
pub(crate) fn parse_token(token: &str) -> (u32, u32, &str) {
    let mut parts = token.splitn(3, ':');
    let mut number = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let (d, r) = (number(), number());
    (d, r, parts.next().unwrap_or(""))
}
