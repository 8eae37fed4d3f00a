//! The Redis Streams source: consumer-group reads, claims of abandoned
//! entries and re-claims for retries feed the pipeline; acks, effect commits
//! and dead letters are carried out here.
//!
//! ```text
//! reader  ─┐                                        ┌─► acker (batched XACK)
//! claimer ─┼─► intake ─► workers ─► settle ─► source ┼─► retry (re-claim when due)
//! retry   ─┘                                        └─► dead letters (script; retried in the background)
//! ```
//!
//! Every action targets the key the delivery was read from, so a second
//! reader and claimer on another stream key (e.g. a redelivery stream) feed
//! the same workers with no other change: see [`spawn_key`].

pub(crate) mod acker;
pub(crate) mod claimer;
pub(crate) mod dead_letters;
pub(crate) mod group;
pub(crate) mod reader;
pub(crate) mod retry;
pub(crate) mod source;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::pipeline::intake::Intake;

pub(crate) use source::{Queues, StreamSource};

/// Spawns the tasks that carry out acks, retries and deferred dead
/// letters. The acker and the dead-letter task run until every sender is
/// gone (they drain after shutdown); the retry scheduler stops at shutdown
/// (its entries stay pending in Redis).
pub(crate) fn spawn_settlers(
    source: &StreamSource,
    queues: Queues,
    intake: Intake<StreamSource>,
    shutdown: &CancellationToken,
    settlers: &mut JoinSet<()>,
    feeders: &mut JoinSet<()>,
) {
    settlers.spawn(crate::pipeline::charged(
        source.ctx.cpu_share.clone(),
        acker::run(source.ctx.clone(), queues.acks, source.conn.clone()),
    ));
    settlers.spawn(dead_letters::run(
        source.ctx.clone(),
        queues.deferred,
        source.conn.clone(),
        shutdown.clone(),
    ));
    feeders.spawn(retry::run(
        source.ctx.clone(),
        queues.retries,
        source.conn.clone(),
        intake,
        shutdown.clone(),
    ));
}

/// Spawns the reader and the claimer of one stream key and its group.
pub(crate) fn spawn_key(
    source: &StreamSource,
    key: Arc<str>,
    group: Arc<group::Group>,
    redis: &crate::connection::Endpoint,
    intake: Intake<StreamSource>,
    shutdown: &CancellationToken,
    feeders: &mut JoinSet<()>,
) {
    let read_timeout =
        Duration::from_millis(source.ctx.config.block_ms) + reader::READ_TIMEOUT_MARGIN;
    feeders.spawn(crate::pipeline::charged(
        source.ctx.cpu_share.clone(),
        reader::run(
            source.ctx.clone(),
            key.clone(),
            group.clone(),
            redis.clone(),
            read_timeout,
            source.conn.clone(),
            intake.clone(),
            shutdown.clone(),
        ),
    ));
    feeders.spawn(claimer::run(
        source.ctx.clone(),
        key,
        group,
        source.conn.clone(),
        intake,
        shutdown.clone(),
    ));
}
