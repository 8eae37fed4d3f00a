//! The consumer group of one stream key: created when missing, recreated
//! loudly when it vanished, and — when creating fails (Redis out of memory,
//! an ACL without `XGROUP`) — retried with the host's backoff and logged once
//! per outage, not once per try.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::connection::Conn;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::pipeline::PluginContext;
use crate::streams;

/// One key's group, shared by its reader and claimer.
pub(crate) struct Group {
    ctx: Arc<PluginContext>,
    key: Arc<str>,
    /// The group has existed (this host created it or found it): only then
    /// is a missing group a *re*creation.
    existed: AtomicBool,
    /// Failing creation: the backoff, and whether the outage was logged.
    failing: Mutex<Option<Backoff>>,
}

impl Group {
    /// The group of `ctx`'s plugin on `key`.
    pub(crate) fn new(ctx: Arc<PluginContext>, key: Arc<str>) -> Group {
        Group {
            ctx,
            key,
            existed: AtomicBool::new(false),
            failing: Mutex::new(None),
        }
    }

    /// Makes sure the group exists; `missing` says Redis just answered
    /// NOGROUP. When creation fails, waits the next backoff delay (or until
    /// shutdown) before returning, so callers never spin.
    pub(crate) async fn ensure(
        &self,
        conn: &mut Conn,
        missing: bool,
        shutdown: &CancellationToken,
    ) {
        let (plugin, stream, group) = (&*self.ctx.plugin.name, &*self.key, self.ctx.group());
        let mut failing = self.failing.lock().await;
        match streams::ensure_group(conn, stream, group).await {
            Ok(created) => {
                let existed = self.existed.swap(true, Ordering::AcqRel);
                if failing.take().is_some() {
                    tracing::info!(plugin, stream, group, "consumer group can be used again");
                }
                // The redelivery stream is the host's own, empty most of the
                // time: losing it with a FLUSHALL loses no source entries,
                // so only the source stream's group counts as recreated.
                let redelivery = stream == self.ctx.redeliver_stream;
                if created && missing && existed && redelivery {
                    tracing::info!(
                        plugin,
                        stream,
                        group,
                        "recreated the redelivery stream's consumer group"
                    );
                } else if created && missing && existed {
                    self.ctx.metrics.groups_recreated.inc();
                    tracing::error!(
                        plugin,
                        stream,
                        group,
                        "consumer group was missing (stream deleted, FLUSHALL, or Redis restarted without persistence); \
                         recreated it from the start of what remains in the stream"
                    );
                } else if created {
                    tracing::info!(plugin, stream, group, "created consumer group");
                }
            }
            Err(e) => {
                if failing.is_none() {
                    tracing::warn!(plugin, stream, group, error = %e,
                        "cannot create the consumer group; retrying with backoff (logged again when it works)");
                    *failing = Some(Backoff::new());
                }
                if let Some(backoff) = failing.as_mut() {
                    backoff.wait(shutdown).await;
                }
            }
        }
    }
}
