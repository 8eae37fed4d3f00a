//! One plugin's consumption: wires its source (a stream, a list queue, a
//! sorted-set queue or Pub/Sub) to
//! the pipeline ([`crate::pipeline`]), runs its workers, and follows hot
//! swaps and scheduled entries. Decides nothing about entries itself.

pub(crate) mod breaker;
pub(crate) mod canary;
pub(crate) mod loader;
pub(crate) mod promoter;
pub(crate) mod shadow;
pub(crate) mod swapper;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connection::Conn;

use crate::config::SourceKind;
use crate::connection::Endpoint;
use crate::pipeline::intake::{Intake, ReadAhead};
use crate::pipeline::source::Source;
use crate::pipeline::{Batch, PluginContext, worker};
use crate::sources::stream::group::Group;
use crate::sources::stream::{self, StreamSource};

/// Response timeout for ordinary commands and scripts.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one plugin until `shutdown`, then drains: entries already read are
/// handled and acked before this returns.
pub async fn run(
    ctx: Arc<PluginContext>,
    redis: Endpoint,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    let redis = &redis;
    let Some(mut commands) = redis.connect(COMMAND_TIMEOUT, &shutdown).await? else {
        return Ok(());
    };
    match ctx.config.source() {
        SourceKind::Stream(_) => run_stream(ctx, redis, commands, shutdown).await,
        SourceKind::List(key) => {
            crate::sources::check_key_type(&mut commands, &ctx.config).await?;
            let key = key.to_owned();
            run_list(ctx.clone(), &key, redis, commands, shutdown).await
        }
        SourceKind::SortedSet(key, _) => {
            crate::sources::check_key_type(&mut commands, &ctx.config).await?;
            let key = key.to_owned();
            run_sorted_set(ctx.clone(), &key, redis, commands, shutdown).await
        }
        SourceKind::Subscribe(_) => run_pubsub(ctx, redis, commands, shutdown).await,
    }
}

/// What every source's consumption starts with: the plugin's name recorded
/// for deploy and the deployed version followed.
async fn prepare(ctx: &Arc<PluginContext>, commands: &mut Conn) {
    if let Err(e) = crate::deploy::register_plugin(commands, &ctx.plugin.name).await {
        tracing::debug!(plugin = %ctx.plugin.name, error = %e, "cannot record the plugin name for deploy");
    }
    swapper::initial_sync(ctx, commands).await;
}

/// Spawns the plugin's workers on a work queue; returns the queue's sender.
fn spawn_workers<S: Source>(
    ctx: &Arc<PluginContext>,
    source: &Arc<S>,
    read_ahead: &Arc<ReadAhead>,
    commands: &Conn,
    tasks: &mut JoinSet<()>,
) -> async_channel::Sender<Batch> {
    let (work_tx, work_rx) = async_channel::bounded::<Batch>(ctx.config.concurrency * 2);
    ctx.metrics.workers.set(ctx.config.concurrency as i64);
    for _ in 0..ctx.config.concurrency {
        spawn_worker(ctx, source, read_ahead, work_rx.clone(), commands, tasks);
    }
    work_tx
}

/// Spawns one worker on `work`, its polls charged to the plugin's CPU share.
fn spawn_worker<S: Source>(
    ctx: &Arc<PluginContext>,
    source: &Arc<S>,
    read_ahead: &Arc<ReadAhead>,
    work: async_channel::Receiver<Batch>,
    commands: &Conn,
    tasks: &mut JoinSet<()>,
) {
    tasks.spawn(crate::pipeline::charged(
        ctx.cpu_share.clone(),
        worker::run(
            ctx.clone(),
            source.clone(),
            read_ahead.clone(),
            work,
            commands.clone(),
        ),
    ));
}

/// The tasks every source's plugin runs beside its own: the host heartbeat,
/// hot swaps (and file watching).
fn spawn_common(
    ctx: &Arc<PluginContext>,
    redis: &Endpoint,
    commands: &Conn,
    shutdown: &CancellationToken,
    feeders: &mut JoinSet<()>,
) {
    feeders.spawn(crate::heartbeat::run(
        crate::heartbeat::Identity {
            plugin: ctx.plugin.name.to_string(),
            stream: ctx.stream().to_owned(),
            group: ctx.group().to_owned(),
            consumer: ctx.consumer.clone(),
        },
        commands.clone(),
        ctx.redis_health.clone(),
        shutdown.clone(),
    ));
    feeders.spawn(swapper::run(
        ctx.clone(),
        redis.clone(),
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
    if !ctx.config.allow.schedule.is_empty() {
        feeders.spawn(promoter::run(
            ctx.clone(),
            commands.clone(),
            shutdown.clone(),
        ));
    }
}

/// Feeders stop on shutdown and drop their intakes; workers then drain the
/// queue and drop the source; the settlers flush what is left and return.
async fn drain(
    ctx: &PluginContext,
    mut feeders: JoinSet<()>,
    mut tasks: JoinSet<()>,
    mut settlers: JoinSet<()>,
) {
    while feeders.join_next().await.is_some() {}
    while tasks.join_next().await.is_some() {}
    while settlers.join_next().await.is_some() {}
    tracing::info!(plugin = %ctx.plugin.name, "stopped");
}

/// Replayed dead letters of a list, sorted-set or Pub/Sub plugin: like a
/// stream plugin's, they go to its own redelivery stream (`dlq replay`), so
/// that only this plugin sees them again, with their original source and
/// bytes (`pipeline::delivery::original`), at attempt 1. Read by a stream
/// source of its own (consumer group, claims: a host killed while handling
/// one loses nothing) with one worker: replays are rare, and the worker
/// instantiates the plugin only when one arrives.
async fn spawn_redelivery(
    ctx: &Arc<PluginContext>,
    redis: &Endpoint,
    commands: &mut Conn,
    shutdown: &CancellationToken,
    sets: (&mut JoinSet<()>, &mut JoinSet<()>, &mut JoinSet<()>),
) {
    let (tasks, settlers, feeders) = sets;
    let key: Arc<str> = Arc::from(ctx.redeliver_stream.as_str());
    let group = Arc::new(Group::new(ctx.clone(), key.clone()));
    group.ensure(commands, false, shutdown).await;
    let (source, queues) = StreamSource::new(ctx.clone(), commands.clone());
    let source = Arc::new(source);
    let read_ahead = Arc::new(ReadAhead::new(ctx.config.read_ahead_bytes()));
    let (work_tx, work_rx) = async_channel::bounded::<Batch>(2);
    spawn_worker(ctx, &source, &read_ahead, work_rx, commands, tasks);
    let intake = Intake::new(ctx.clone(), source.clone(), work_tx, read_ahead);
    stream::spawn_settlers(&source, queues, intake.clone(), shutdown, settlers, feeders);
    stream::spawn_key(&source, key, group, redis, intake, shutdown, feeders);
}

/// A list queue plugin.
async fn run_list(
    ctx: Arc<PluginContext>,
    key: &str,
    redis: &Endpoint,
    mut commands: Conn,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    use crate::sources::list;
    prepare(&ctx, &mut commands).await;
    let keys = Arc::new(list::Keys::new(key, &ctx.plugin.name, &ctx.consumer));
    list::recovery::start(&ctx, &keys, &mut commands).await?;
    let (source, acks) = list::ListSource::new(
        ctx.clone(),
        commands.clone(),
        keys.clone(),
        shutdown.clone(),
    );
    let source = Arc::new(source);
    let read_ahead = Arc::new(ReadAhead::new(ctx.config.read_ahead_bytes()));
    let (mut tasks, mut settlers, mut feeders) = (JoinSet::new(), JoinSet::new(), JoinSet::new());
    let work = spawn_workers(&ctx, &source, &read_ahead, &commands, &mut tasks);
    let intake = Intake::new(ctx.clone(), source.clone(), work, read_ahead);
    settlers.spawn(crate::pipeline::charged(
        ctx.cpu_share.clone(),
        list::source::run_acker(ctx.clone(), keys.clone(), acks, commands.clone()),
    ));
    feeders.spawn(crate::pipeline::charged(
        ctx.cpu_share.clone(),
        list::popper::run(
            ctx.clone(),
            source.clone(),
            redis.clone(),
            commands.clone(),
            intake,
            shutdown.clone(),
        ),
    ));
    feeders.spawn(list::recovery::run(
        ctx.clone(),
        keys,
        commands.clone(),
        shutdown.clone(),
    ));
    let sets = (&mut tasks, &mut settlers, &mut feeders);
    spawn_redelivery(&ctx, redis, &mut commands, &shutdown, sets).await;
    drop(source);
    spawn_common(&ctx, redis, &commands, &shutdown, &mut feeders);
    drain(&ctx, feeders, tasks, settlers).await;
    Ok(())
}

/// A stream plugin: its consumer group on the stream and on its redelivery stream.
async fn run_stream(
    ctx: Arc<PluginContext>,
    redis: &Endpoint,
    mut commands: Conn,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    let key: Arc<str> = Arc::from(ctx.stream());
    let group = Arc::new(Group::new(ctx.clone(), key.clone()));
    group.ensure(&mut commands, false, &shutdown).await;
    prepare(&ctx, &mut commands).await;

    let (source, queues) = StreamSource::new(ctx.clone(), commands.clone());
    let source = Arc::new(source);
    let read_ahead = Arc::new(ReadAhead::new(ctx.config.read_ahead_bytes()));
    let mut tasks = JoinSet::new();
    let work_tx = spawn_workers(&ctx, &source, &read_ahead, &commands, &mut tasks);
    let intake = Intake::new(ctx.clone(), source.clone(), work_tx, read_ahead.clone());
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
        redis,
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
        redis,
        intake,
        &shutdown,
        &mut feeders,
    );
    // Workers and intakes hold the source; the settlers end once they are gone.
    drop(source);
    spawn_common(&ctx, redis, &commands, &shutdown, &mut feeders);
    drain(&ctx, feeders, tasks, settlers).await;
    Ok(())
}

/// A sorted-set queue plugin.
async fn run_sorted_set(
    ctx: Arc<PluginContext>,
    key: &str,
    redis: &Endpoint,
    mut commands: Conn,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    use crate::sources::sorted_set;
    let SourceKind::SortedSet(_, order) = ctx.config.source() else {
        return Ok(());
    };
    prepare(&ctx, &mut commands).await;
    let keys = Arc::new(sorted_set::Keys::new(key, &ctx.plugin.name));
    let (source, acks) = sorted_set::SortedSetSource::new(
        ctx.clone(),
        commands.clone(),
        keys.clone(),
        shutdown.clone(),
    );
    let source = Arc::new(source);
    let read_ahead = Arc::new(ReadAhead::new(ctx.config.read_ahead_bytes()));
    let (mut tasks, mut settlers, mut feeders) = (JoinSet::new(), JoinSet::new(), JoinSet::new());
    let work = spawn_workers(&ctx, &source, &read_ahead, &commands, &mut tasks);
    let intake = Intake::new(ctx.clone(), source.clone(), work, read_ahead);
    settlers.spawn(crate::pipeline::charged(
        ctx.cpu_share.clone(),
        sorted_set::source::run_acker(ctx.clone(), keys, acks, commands.clone()),
    ));
    feeders.spawn(crate::pipeline::charged(
        ctx.cpu_share.clone(),
        sorted_set::popper::run(
            ctx.clone(),
            source.clone(),
            order,
            commands.clone(),
            intake,
            shutdown.clone(),
        ),
    ));
    feeders.spawn(sorted_set::keeper::run(
        ctx.clone(),
        source.clone(),
        commands.clone(),
        shutdown.clone(),
    ));
    let sets = (&mut tasks, &mut settlers, &mut feeders);
    spawn_redelivery(&ctx, redis, &mut commands, &shutdown, sets).await;
    drop(source);
    spawn_common(&ctx, redis, &commands, &shutdown, &mut feeders);
    drain(&ctx, feeders, tasks, settlers).await;
    Ok(())
}

/// A Pub/Sub plugin.
async fn run_pubsub(
    ctx: Arc<PluginContext>,
    redis: &Endpoint,
    mut commands: Conn,
    shutdown: CancellationToken,
) -> crate::Result<()> {
    use crate::sources::pubsub;
    let SourceKind::Subscribe(names) = ctx.config.source() else {
        return Ok(());
    };
    let names = names.to_vec();
    prepare(&ctx, &mut commands).await;
    let (source, retries) = pubsub::PubSubSource::new(ctx.clone(), commands.clone());
    let source = Arc::new(source);
    let read_ahead = Arc::new(ReadAhead::new(ctx.config.read_ahead_bytes()));
    let (mut tasks, mut settlers, mut feeders) = (JoinSet::new(), JoinSet::new(), JoinSet::new());
    let work = spawn_workers(&ctx, &source, &read_ahead, &commands, &mut tasks);
    let intake = Intake::new(ctx.clone(), source.clone(), work, read_ahead);
    feeders.spawn(pubsub::source::run_retrier(
        ctx.clone(),
        retries,
        intake.clone(),
        shutdown.clone(),
    ));
    feeders.spawn(crate::pipeline::charged(
        ctx.cpu_share.clone(),
        pubsub::subscriber::run(
            ctx.clone(),
            source.clone(),
            redis.clone(),
            names,
            intake,
            shutdown.clone(),
        ),
    ));
    let sets = (&mut tasks, &mut settlers, &mut feeders);
    spawn_redelivery(&ctx, redis, &mut commands, &shutdown, sets).await;
    drop(source);
    spawn_common(&ctx, redis, &commands, &shutdown, &mut feeders);
    drain(&ctx, feeders, tasks, settlers).await;
    Ok(())
}
