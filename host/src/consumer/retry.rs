//! The retry scheduler: holds failed entries' due times (the entries stay
//! pending in Redis, so nothing is lost if this host dies) and, when due,
//! re-claims them for this consumer, which makes Redis count the delivery.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::gauge::Gauge;

use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

use super::{Batch, PluginContext, reader::send_split};
use crate::streams::{entry, scripts};

/// An entry to deliver again no sooner than `due`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryRequest {
    /// When it is due (first field: the heap orders by it).
    pub due: Instant,
    /// The entry id.
    pub id: String,
}

/// The retries this host waits on, with their due times, for the dashboard
/// and `streamhost_retries_waiting` (bounded by the in-flight entries).
#[derive(Debug, Default)]
pub struct Waiting {
    due: Mutex<HashMap<String, SystemTime>>,
    gauge: Gauge,
}

impl Waiting {
    /// An empty board whose size `gauge` mirrors.
    pub fn counted(gauge: Gauge) -> Waiting {
        Waiting {
            gauge,
            ..Waiting::default()
        }
    }

    fn add(&self, request: &RetryRequest) {
        let wall = SystemTime::now() + request.due.saturating_duration_since(Instant::now());
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        due.insert(request.id.clone(), wall);
        self.gauge.set(due.len() as i64);
    }

    fn remove<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            due.remove(id);
        }
        self.gauge.set(due.len() as i64);
    }

    /// Up to `limit` waiting entries, soonest first, and how many wait in all.
    pub fn soonest(&self, limit: usize) -> (Vec<(String, SystemTime)>, usize) {
        let due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(String, SystemTime)> =
            due.iter().map(|(id, t)| (id.clone(), *t)).collect();
        all.sort_by_key(|(_, t)| *t);
        let total = all.len();
        all.truncate(limit);
        (all, total)
    }
}

/// Ids re-claimed in one script call.
const MAX_PER_CLAIM: usize = 256;

/// Runs until shutdown or until every worker is gone.
pub async fn run(
    ctx: Arc<PluginContext>,
    mut requests: UnboundedReceiver<RetryRequest>,
    mut conn: ConnectionManager,
    work: async_channel::Sender<Batch>,
    shutdown: CancellationToken,
) {
    let mut queue: BinaryHeap<Reverse<RetryRequest>> = BinaryHeap::new();
    loop {
        let next_due = queue.peek().map(|r| r.0.due);
        let wait = next_due.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            request = requests.recv() => match request {
                Some(r) => {
                    ctx.retries.add(&r);
                    queue.push(Reverse(r));
                }
                None => return,
            },
            _ = tokio::time::sleep(wait), if next_due.is_some() => {
                let now = Instant::now();
                let mut due = Vec::new();
                while due.len() < MAX_PER_CLAIM && queue.peek().is_some_and(|r| r.0.due <= now) {
                    if let Some(Reverse(r)) = queue.pop() {
                        due.push(r.id);
                    }
                }
                ctx.retries.remove(due.iter().map(String::as_str));
                match reclaim(&ctx, &mut conn, &due).await {
                    Ok(entries) => {
                        // Entries not returned were claimed by another
                        // consumer meanwhile, or deleted: no longer ours.
                        let kept: HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
                        ctx.inflight.release(due.iter().map(String::as_str).filter(|id| !kept.contains(id)));
                        // Straight to the workers: this host decided the retry,
                        // so the attempt is one the policy allows.
                        if !entries.is_empty() && send_split(&ctx, &work, entries).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        ctx.metrics.redis_error("reclaim");
                        tracing::warn!(plugin = %ctx.plugin.name, error = %e, "re-claim for retry failed; trying again shortly");
                        let later = Instant::now() + Duration::from_millis(500);
                        for id in due {
                            let request = RetryRequest { due: later, id };
                            ctx.retries.add(&request);
                            queue.push(Reverse(request));
                        }
                    }
                }
            }
        }
    }
}

/// Claims own pending entries again (a new delivery, counted by Redis), if
/// this consumer still owns them; acks and reports those deleted meanwhile.
pub(crate) async fn reclaim(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    ids: &[String],
) -> Result<Vec<entry::Entry>, Box<dyn std::error::Error + Send + Sync>> {
    let reply: Value = scripts::RECLAIM
        .key(ctx.stream())
        .arg(ctx.group())
        .arg(&ctx.consumer)
        .arg(ids)
        .invoke_async(conn)
        .await?;
    let Value::Array(mut parts) = reply else {
        return Err("reclaim script returned an unexpected reply".into());
    };
    if parts.len() != 2 {
        return Err("reclaim script returned an unexpected reply".into());
    }
    let gone = entry::parse_ids(parts.pop().unwrap_or(Value::Nil))?;
    let claimed = entry::parse_claimed(parts.pop().unwrap_or(Value::Nil))?;
    if !gone.is_empty() {
        ctx.metrics.trimmed.inc_by(gone.len() as u64);
        tracing::warn!(plugin = %ctx.plugin.name, count = gone.len(), "entries awaiting retry were deleted or trimmed; acked");
    }
    Ok(claimed)
}
