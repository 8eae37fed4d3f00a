//! The stream source's side of the pipeline: carries out settle's verdicts
//! on the key each delivery was read from (XACK in batches, the commit
//! script, a re-claim later, the dead-letter script).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::Conn;
use tokio::sync::mpsc::UnboundedSender;

use super::{dead_letters, retry};
use crate::effects::{self, Commit, CommitTarget, EffectBuffer};
use crate::pipeline::settle::CommitState;
use crate::pipeline::source::{DeadLetterRequest, Source};
use crate::pipeline::{PluginContext, Receipt};

/// One plugin's stream source: the handles its actions need.
pub(crate) struct StreamSource {
    pub(super) ctx: Arc<PluginContext>,
    pub(super) conn: Conn,
    acks: UnboundedSender<Vec<Receipt>>,
    retries: UnboundedSender<retry::RetryRequest>,
    deferred: UnboundedSender<DeadLetterRequest>,
}

/// The receiving ends of a [`StreamSource`]'s queues, for its background tasks.
pub(crate) struct Queues {
    pub(super) acks: tokio::sync::mpsc::UnboundedReceiver<Vec<Receipt>>,
    pub(super) retries: tokio::sync::mpsc::UnboundedReceiver<retry::RetryRequest>,
    pub(super) deferred: tokio::sync::mpsc::UnboundedReceiver<DeadLetterRequest>,
}

impl StreamSource {
    /// A source acting through `conn`; run its [`Queues`] with [`super::spawn_settlers`].
    pub(crate) fn new(ctx: Arc<PluginContext>, conn: Conn) -> (StreamSource, Queues) {
        let (acks, acks_rx) = tokio::sync::mpsc::unbounded_channel();
        let (retries, retries_rx) = tokio::sync::mpsc::unbounded_channel();
        let (deferred, deferred_rx) = tokio::sync::mpsc::unbounded_channel();
        (
            StreamSource {
                ctx,
                conn,
                acks,
                retries,
                deferred,
            },
            Queues {
                acks: acks_rx,
                retries: retries_rx,
                deferred: deferred_rx,
            },
        )
    }
}

impl Source for StreamSource {
    fn ack(&self, done: Vec<Receipt>) {
        if self.acks.send(done).is_err() {
            tracing::error!(plugin = %self.ctx.plugin.name, "acker stopped early; handled entries stay pending and will be redelivered");
        }
    }

    async fn commit(&self, receipt: &Receipt, effects: &EffectBuffer) -> CommitState {
        let target = CommitTarget {
            key: &receipt.key,
            held: effects::Held::Stream {
                group: self.ctx.group(),
                consumer: &self.ctx.consumer,
            },
        };
        let mut conn = self.conn.clone();
        match effects::commit(
            &mut conn,
            &target,
            &receipt.id,
            effects,
            &self.ctx.plugin.effects,
        )
        .await
        {
            Ok(Commit::Committed) => CommitState::Committed,
            Ok(Commit::NotOwner) => CommitState::NotOwner,
            Ok(Commit::Conflict) => CommitState::Conflict,
            Err(e) => {
                self.ctx.metrics.redis_error("commit");
                if crate::streams::is_transient(&e) {
                    CommitState::Unavailable(e.to_string())
                } else {
                    CommitState::Refused(e.to_string())
                }
            }
        }
    }

    fn retry(&self, mut receipt: Receipt, delay: Duration, attempt_used: bool) {
        if !attempt_used {
            receipt.uncounted.refused = receipt.uncounted.refused.saturating_add(1);
        }
        // A closed scheduler means shutdown: the entry stays pending.
        let _ = self.retries.send(retry::RetryRequest {
            due: Instant::now() + delay,
            receipt,
        });
    }

    async fn dead_letter(&self, request: DeadLetterRequest) {
        let mut conn = self.conn.clone();
        if let Err(e) = dead_letters::write(&self.ctx, &mut conn, &request).await {
            tracing::warn!(plugin = %self.ctx.plugin.name, id = request.receipt.id, error = %e,
                "dead-lettering failed; the entry stays pending and is dead-lettered again in the background");
            if let Err(lost) = self.deferred.send(request) {
                // Shutdown: left pending, redelivered after the restart.
                self.forget(&lost.0.receipt);
            }
        }
    }

    fn forget(&self, receipt: &Receipt) {
        self.ctx
            .inflight
            .release(&receipt.key, [receipt.id.as_str()]);
    }
}
