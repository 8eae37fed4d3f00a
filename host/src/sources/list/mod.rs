//! The list queue source: a reliable FIFO queue on a Redis list. Producers
//! `LPUSH`; the host moves items from the queue's right end into a
//! processing list of its own (`LMOVE`/`BLMOVE`, one step, so an item is
//! always in one of the two), and settles them there:
//!
//! ```text
//! popper ─► intake ─► workers ─► settle ─► source ┬─► ok: LREM one copy (with effects: the commit script)
//!   ▲                                             ├─► retry: after the backoff, back on the queue, count wrapped on
//!   └── recovery: a dead consumer's processing    └─► reject / exhausted: LREM + XADD to the DLQ (one script)
//!       list goes back to the queue (any live host)
//! ```
//!
//! Attempt counts live in the item itself while it is back on the queue
//! ([`item`]); a consumer's heartbeat key (TTL `claim.min_idle_ms`) tells
//! live consumers from dead ones ([`recovery`]).

pub(crate) mod item;
pub(crate) mod popper;
pub(crate) mod recovery;
pub(crate) mod source;

use std::sync::{Arc, LazyLock};

use redis::Script;

pub(crate) use source::ListSource;

/// Pop up to N items into the processing list.
pub(crate) static POP: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/pop.lua")));
/// Put a held item back on the queue with its count.
pub(crate) static REQUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/requeue.lua")));
/// Remove a held item and dead-letter it, atomically.
pub(crate) static DEAD_LETTER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/dead_letter.lua")));
/// Move a (dead or own former) processing list back to the queue.
pub(crate) static RECOVER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/recover.lua")));

/// The Redis keys of one plugin's list queue. All are named after the queue
/// so they share its Redis Cluster hash tag.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// The queue producers push to.
    pub(crate) queue: Arc<str>,
    /// This consumer's processing list.
    pub(crate) processing: String,
    /// This consumer's heartbeat key.
    pub(crate) alive: String,
    /// The set of consumers of the plugin that may hold a processing list.
    pub(crate) consumers: String,
}

impl Keys {
    /// The keys of `plugin`'s consumer `consumer` on `queue`.
    pub(crate) fn new(queue: &str, plugin: &str, consumer: &str) -> Keys {
        Keys {
            queue: Arc::from(queue),
            processing: processing_key(queue, plugin, consumer),
            alive: alive_key(queue, plugin, consumer),
            consumers: format!("{queue}:consumers:{plugin}"),
        }
    }
}

/// The processing list of one consumer: `<queue>:processing:<plugin>:<consumer>`.
pub(crate) fn processing_key(queue: &str, plugin: &str, consumer: &str) -> String {
    format!("{queue}:processing:{plugin}:{consumer}")
}

/// The heartbeat key of one consumer: `<queue>:alive:<plugin>:<consumer>`.
pub(crate) fn alive_key(queue: &str, plugin: &str, consumer: &str) -> String {
    format!("{queue}:alive:{plugin}:{consumer}")
}
