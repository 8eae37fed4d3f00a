//! The retry scheduler: holds the due times of entries to deliver again (the
//! entries stay pending in Redis, so nothing is lost if this host dies) and,
//! when due, re-claims them for this consumer, which makes Redis count the
//! delivery, then hands them to the intake.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::Conn;
use redis::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::pipeline::intake::Intake;
use crate::pipeline::source::Source;
use crate::pipeline::{Delivery, PluginContext, Receipt, Uncounted};
use crate::streams::entry::{self, ReplyError};
use crate::streams::scripts;

/// An entry to deliver again no sooner than `due`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RetryRequest {
    /// When it is due.
    pub due: Instant,
    /// The delivery to repeat (its key, id and attempt accounting).
    pub receipt: Receipt,
}

impl Ord for RetryRequest {
    fn cmp(&self, other: &Self) -> Ordering {
        self.due
            .cmp(&other.due)
            .then_with(|| self.receipt.id.cmp(&other.receipt.id))
    }
}

impl PartialOrd for RetryRequest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Ids re-claimed in one script call.
const MAX_PER_CLAIM: usize = 256;

/// Why a re-claim failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReclaimError {
    /// Redis refused or could not be reached.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// The script answered in an unexpected shape.
    #[error(transparent)]
    Reply(#[from] ReplyError),
}

impl ReclaimError {
    /// Whether Redis may have run the script although no reply came.
    fn may_have_run(&self) -> bool {
        matches!(self, ReclaimError::Redis(e) if e.is_timeout() || e.is_connection_dropped())
    }
}

/// Runs until shutdown or until every worker is gone.
pub(crate) async fn run<S: Source>(
    ctx: Arc<PluginContext>,
    mut requests: UnboundedReceiver<RetryRequest>,
    mut conn: Conn,
    intake: Intake<S>,
    shutdown: CancellationToken,
) {
    let mut queue: BinaryHeap<Reverse<RetryRequest>> = BinaryHeap::new();
    let mut backoff = Backoff::new();
    loop {
        let next_due = queue.peek().map(|r| r.0.due);
        let wait = next_due.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            request = requests.recv() => match request {
                Some(r) => {
                    ctx.retries.add(&r.receipt, r.due);
                    queue.push(Reverse(r));
                }
                None => return,
            },
            _ = tokio::time::sleep(wait), if next_due.is_some() => {
                let now = Instant::now();
                let mut due: Vec<Receipt> = Vec::new();
                while due.len() < MAX_PER_CLAIM && queue.peek().is_some_and(|r| r.0.due <= now) {
                    if let Some(Reverse(r)) = queue.pop() {
                        due.push(r.receipt);
                    }
                }
                ctx.retries.remove(&due);
                match redeliver(&ctx, &mut conn, &due).await {
                    Ok(deliveries) => {
                        backoff.reset();
                        if !deliveries.is_empty() && intake.submit_held(deliveries).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        ctx.metrics.redis_error("reclaim");
                        tracing::warn!(plugin = %ctx.plugin.name, error = %e, "re-claim for retry failed; trying again with backoff");
                        // A re-claim that timed out may still have run and
                        // counted a delivery no handler will see.
                        let unseen = u32::from(e.may_have_run());
                        let later = Instant::now() + backoff.next_delay();
                        queue.extend(due.into_iter().map(|mut receipt| {
                            receipt.uncounted.unseen = receipt.uncounted.unseen.saturating_add(unseen);
                            ctx.retries.add(&receipt, later);
                            Reverse(RetryRequest { due: later, receipt })
                        }));
                    }
                }
            }
        }
    }
}

/// Re-claims due entries (grouped by key) and turns them into deliveries
/// that keep their attempt accounting; lets go of those no longer ours.
async fn redeliver(
    ctx: &PluginContext,
    conn: &mut Conn,
    due: &[Receipt],
) -> Result<Vec<Delivery>, ReclaimError> {
    let mut by_key: HashMap<&Arc<str>, Vec<&Receipt>> = HashMap::new();
    for r in due {
        by_key.entry(&r.key).or_default().push(r);
    }
    let mut deliveries = Vec::with_capacity(due.len());
    for (key, receipts) in by_key {
        let ids: Vec<String> = receipts.iter().map(|r| r.id.clone()).collect();
        let entries = reclaim(ctx, conn, key, &ids).await?;
        // Entries not returned were claimed by another consumer meanwhile,
        // or deleted: no longer ours.
        let kept: HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        ctx.inflight.release(
            key,
            ids.iter()
                .map(String::as_str)
                .filter(|id| !kept.contains(id)),
        );
        let discount: HashMap<&str, Uncounted> = receipts
            .iter()
            .map(|r| (r.id.as_str(), r.uncounted))
            .collect();
        deliveries.extend(entries.into_iter().map(|e| Delivery {
            uncounted: discount.get(e.id.as_str()).copied().unwrap_or_default(),
            key: key.clone(),
            entry: e,
            origin: Default::default(),
        }));
    }
    Ok(deliveries)
}

/// Claims own pending entries of `key` again (a new delivery, counted by
/// Redis), if this consumer still owns them; acks and reports those deleted
/// meanwhile.
pub(crate) async fn reclaim(
    ctx: &PluginContext,
    conn: &mut Conn,
    key: &str,
    ids: &[String],
) -> Result<Vec<entry::Entry>, ReclaimError> {
    let reply: Value = scripts::RECLAIM
        .key(key)
        .arg(ctx.group())
        .arg(&ctx.consumer)
        .arg(ids)
        .invoke_async(conn)
        .await?;
    let Value::Array(parts) = reply else {
        return Err(ReplyError("reclaim script returned an unexpected reply".into()).into());
    };
    let [claimed, gone]: [Value; 2] = parts
        .try_into()
        .map_err(|_| ReplyError("reclaim script returned an unexpected reply".into()))?;
    let gone = entry::parse_ids(gone)?;
    let claimed = entry::parse_claimed(claimed)?;
    if !gone.is_empty() {
        ctx.metrics.trimmed.inc_by(gone.len() as u64);
        tracing::warn!(plugin = %ctx.plugin.name, count = gone.len(), "entries awaiting retry were deleted or trimmed; acked");
    }
    Ok(claimed)
}
