//! One plugin's consumption: wires its source (today: one Redis stream) to
//! the pipeline ([`crate::pipeline`]), runs its workers, and follows hot
//! swaps and scheduled entries. Decides nothing about entries itself.

pub(crate) mod promoter;
pub(crate) mod swapper;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::pipeline::intake::{Intake, ReadAhead};
use crate::pipeline::{Batch, PluginContext, worker};
use crate::sources::stream::group::Group;
use crate::sources::stream::{self, StreamSource};
use crate::streams;

/// Response timeout for ordinary commands and scripts.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one plugin until `shutdown`, then drains: entries already read are
/// handled and acked before this returns.
pub async fn run(
    ctx: Arc<PluginContext>,
    redis_url: &str,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    let Some(mut commands) = streams::connect(redis_url, COMMAND_TIMEOUT, &shutdown).await? else {
        return Ok(());
    };
    let key: Arc<str> = Arc::from(ctx.stream());
    let group = Arc::new(Group::new(ctx.clone(), key.clone()));
    group.ensure(&mut commands, false, &shutdown).await;
    if let Err(e) = crate::deploy::register_plugin(&mut commands, &ctx.plugin.name).await {
        tracing::debug!(plugin = %ctx.plugin.name, error = %e, "cannot record the plugin name for deploy");
    }
    swapper::initial_sync(&ctx, &mut commands).await;

    let (work_tx, work_rx) = async_channel::bounded::<Batch>(ctx.config.concurrency * 2);
    ctx.metrics.workers.set(ctx.config.concurrency as i64);
    let (source, queues) = StreamSource::new(ctx.clone(), commands.clone());
    let source = Arc::new(source);
    let read_ahead = Arc::new(ReadAhead::new(ctx.config.read_ahead_bytes()));
    let intake = Intake::new(ctx.clone(), source.clone(), work_tx, read_ahead.clone());

    let mut tasks = JoinSet::new();
    for _ in 0..ctx.config.concurrency {
        tasks.spawn(worker::run(
            ctx.clone(),
            source.clone(),
            read_ahead.clone(),
            work_rx.clone(),
            commands.clone(),
        ));
    }
    drop(work_rx);
    let mut settlers = JoinSet::new();
    let mut feeders = JoinSet::new();
    stream::spawn_settlers(
        &source,
        queues,
        intake.clone(),
        &shutdown,
        &mut settlers,
        &mut feeders,
    );
    stream::spawn_key(
        &source,
        key,
        group,
        redis_url,
        intake.clone(),
        &shutdown,
        &mut feeders,
    );
    // Replayed dead letters reach this plugin alone: its group also reads its
    // own redelivery stream, with the same source code on another key.
    let redeliver: Arc<str> = Arc::from(ctx.redeliver_stream.as_str());
    let redeliver_group = Arc::new(Group::new(ctx.clone(), redeliver.clone()));
    redeliver_group
        .ensure(&mut commands, false, &shutdown)
        .await;
    stream::spawn_key(
        &source,
        redeliver,
        redeliver_group,
        redis_url,
        intake,
        &shutdown,
        &mut feeders,
    );
    // Workers and intakes hold the source; the settlers end once they are gone.
    drop(source);
    if !ctx.config.allow.schedule.is_empty() {
        feeders.spawn(promoter::run(
            ctx.clone(),
            commands.clone(),
            shutdown.clone(),
        ));
    }
    feeders.spawn(crate::heartbeat::run(
        crate::heartbeat::Identity {
            plugin: ctx.plugin.name.to_string(),
            stream: ctx.config.stream.clone(),
            group: ctx.group().to_owned(),
            consumer: ctx.consumer.clone(),
        },
        commands.clone(),
        ctx.redis_health.clone(),
        shutdown.clone(),
    ));
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

    // Feeders stop on shutdown and drop their intakes; workers then drain the
    // queue and drop the source; the acker flushes what is left and returns.
    while feeders.join_next().await.is_some() {}
    while tasks.join_next().await.is_some() {}
    while settlers.join_next().await.is_some() {}
    tracing::info!(plugin = %ctx.plugin.name, "stopped");
    Ok(())
}
