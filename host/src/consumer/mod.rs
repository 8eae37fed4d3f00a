//! One plugin's consumption of its stream: the tasks that read, handle, ack,
//! retry and claim, wired together with channels.
//!
//! ```text
//! reader ──┐                       ┌─► acker (batched XACK)
//! retry ───┼─► work queue ─► workers ┼─► retry scheduler (backoff, then re-claim)
//! claimer ─┘                       └─► dead-letter script (ownership check, XADD, XACK)
//! ```

pub mod acker;
pub mod claimer;
pub mod inflight;
pub mod promoter;
pub mod reader;
pub mod retry;
pub mod swapper;
pub mod worker;

use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::PluginConfig;
use crate::metrics::PluginMetrics;
use crate::plugin::LoadedPlugin;
use crate::streams::{self, Entry};

/// Margin over `BLOCK` for the reader's response timeout, so a blocking read
/// is never mistaken for a dead connection.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// Response timeout for ordinary commands and scripts.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What every task of one plugin shares.
pub struct PluginContext {
    /// The component loaded at start (its name, engine and limits stay valid
    /// across hot swaps; use [`PluginContext::running`] for the version to invoke).
    pub plugin: Arc<LoadedPlugin>,
    /// The version new entries go to; replaced by hot swaps.
    pub current: ArcSwap<LoadedPlugin>,
    /// The deployed version number this host last acted on (swapped to or refused).
    followed: std::sync::Mutex<Option<u64>>,
    /// Swap when the component file changes on disk (`run --watch`).
    pub watch: bool,
    /// The host's registry, to relabel the running version after a swap.
    pub registry: Option<Arc<crate::metrics::Metrics>>,
    /// The plugin's config table.
    pub config: PluginConfig,
    /// This host's consumer name in the group.
    pub consumer: String,
    /// The dead-letter stream.
    pub dlq_stream: String,
    /// Metric handles.
    pub metrics: PluginMetrics,
    /// Entries this host holds (queued, being handled, awaiting ack or retry).
    pub inflight: inflight::InFlight,
    /// Set while the plugin is paused: the reader and claimer wait on it.
    pub paused: crate::pause::PauseFlag,
    /// Entries waiting here for their next attempt (shown by the dashboard).
    pub retries: retry::Waiting,
}

impl PluginContext {
    /// A context whose running version is `plugin`.
    pub fn new(
        plugin: Arc<LoadedPlugin>,
        config: PluginConfig,
        metrics: PluginMetrics,
    ) -> PluginContext {
        PluginContext {
            current: ArcSwap::new(plugin.clone()),
            followed: std::sync::Mutex::new(None),
            watch: false,
            registry: None,
            consumer: config.consumer(),
            dlq_stream: config.dlq_stream(),
            inflight: inflight::InFlight::counted(metrics.in_flight.clone()),
            retries: retry::Waiting::counted(metrics.retries_waiting.clone()),
            paused: Default::default(),
            plugin,
            config,
            metrics,
        }
    }

    /// The deployed version number this host last acted on.
    pub fn followed(&self) -> Option<u64> {
        self.followed.lock().ok().and_then(|v| *v)
    }

    /// Records that this host acted on deployed version `version`.
    pub fn note_followed(&self, version: u64) {
        if let Ok(mut v) = self.followed.lock() {
            *v = Some(version);
        }
    }

    /// The version new entries go to.
    pub fn running(&self) -> Arc<LoadedPlugin> {
        self.current.load_full()
    }

    /// The consumer group.
    pub fn group(&self) -> &str {
        self.config.group()
    }
    /// The source stream.
    pub fn stream(&self) -> &str {
        &self.config.stream
    }
}

/// A batch of entries on its way to the workers.
pub type Batch = Vec<Entry>;

/// Runs one plugin until `shutdown`, then drains: entries already read are
/// handled and acked before this returns.
pub async fn run(
    ctx: Arc<PluginContext>,
    redis_url: &str,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    let read_timeout = Duration::from_millis(ctx.config.block_ms) + READ_TIMEOUT_MARGIN;
    let Some(mut commands) = streams::connect(redis_url, COMMAND_TIMEOUT, &shutdown).await? else {
        return Ok(());
    };
    ensure_group_logged(&ctx, &mut commands, false).await;
    swapper::initial_sync(&ctx, &mut commands).await;

    let (work_tx, work_rx) = async_channel::bounded::<Batch>(ctx.config.concurrency * 2);
    ctx.metrics.workers.set(ctx.config.concurrency as i64);
    let (ack_tx, ack_rx) = tokio::sync::mpsc::unbounded_channel();
    let (retry_tx, retry_rx) = tokio::sync::mpsc::unbounded_channel();

    let mut tasks = JoinSet::new();
    for _ in 0..ctx.config.concurrency {
        tasks.spawn(worker::run(
            ctx.clone(),
            work_rx.clone(),
            ack_tx.clone(),
            retry_tx.clone(),
            commands.clone(),
        ));
    }
    drop((work_rx, ack_tx, retry_tx));
    let acker = tokio::spawn(acker::run(ctx.clone(), ack_rx, commands.clone()));
    let mut feeders = JoinSet::new();
    feeders.spawn(reader::run(
        ctx.clone(),
        redis_url.to_owned(),
        read_timeout,
        commands.clone(),
        work_tx.clone(),
        shutdown.clone(),
    ));
    feeders.spawn(retry::run(
        ctx.clone(),
        retry_rx,
        commands.clone(),
        work_tx.clone(),
        shutdown.clone(),
    ));
    feeders.spawn(claimer::run(
        ctx.clone(),
        commands.clone(),
        work_tx,
        shutdown.clone(),
    ));
    if !ctx.config.allow.schedule.is_empty() {
        feeders.spawn(promoter::run(
            ctx.clone(),
            commands.clone(),
            shutdown.clone(),
        ));
    }
    feeders.spawn(swapper::run(
        ctx.clone(),
        redis_url.to_owned(),
        commands.clone(),
        shutdown.clone(),
    ));
    if ctx.watch {
        feeders.spawn(swapper::watch_file(
            ctx.clone(),
            ctx.config.component.clone(),
            shutdown.clone(),
        ));
    }

    // Feeders stop on shutdown and drop their senders; workers then drain the
    // queue and drop theirs; the acker flushes what is left and returns.
    while feeders.join_next().await.is_some() {}
    while tasks.join_next().await.is_some() {}
    let _ = acker.await;
    tracing::info!(plugin = %ctx.plugin.name, "stopped");
    Ok(())
}

/// Creates the group when missing; `lost` says it existed before and vanished
/// (stream deleted, FLUSHALL, Redis restarted without persistence).
pub(crate) async fn ensure_group_logged(
    ctx: &PluginContext,
    conn: &mut ConnectionManager,
    lost: bool,
) {
    match streams::ensure_group(conn, ctx.stream(), ctx.group()).await {
        Ok(true) if lost => {
            ctx.metrics.groups_recreated.inc();
            tracing::error!(
                plugin = %ctx.plugin.name, stream = ctx.stream(), group = ctx.group(),
                "consumer group was missing (stream deleted, FLUSHALL, or Redis restarted without persistence); \
                 recreated it from the start of what remains in the stream"
            );
        }
        Ok(true) => {
            tracing::info!(plugin = %ctx.plugin.name, stream = ctx.stream(), group = ctx.group(), "created consumer group")
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(plugin = %ctx.plugin.name, error = %e, "cannot create consumer group yet")
        }
    }
}

/// Sleeps for `delay` unless `shutdown` fires first; returns whether to go on.
pub(crate) async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}
