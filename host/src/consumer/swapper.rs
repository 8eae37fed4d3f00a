//! The swapper: keeps the version a plugin runs equal to its deployed version
//! (`streamhost deploy`/`rollback`), or to its component file with `--watch`.
//! A candidate is loaded, compiled (or taken from the compile cache) and
//! instantiated once before it replaces the running version; a candidate that
//! fails is refused, reported, and the running version keeps serving.
//!
//! Workers pick the new version up at their next entry: an invocation already
//! running finishes (and is acked) on the version it started with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::loader::load;
use crate::deploy::{self, DeployKeys};
use crate::pipeline::PluginContext;
use crate::plugin::LoadedPlugin;
use crate::shutdown::pause;

/// How often the deployed version is polled besides the announcements
/// (Pub/Sub messages are lost while a subscriber reconnects).
const POLL: Duration = Duration::from_secs(2);
/// How often `--watch` looks at the component file.
const WATCH: Duration = Duration::from_millis(250);

/// Before consuming: switch to the deployed version if there is one, so a host
/// that starts later runs what was deployed, not its config file.
pub(crate) async fn initial_sync(ctx: &PluginContext, conn: &mut Conn) {
    follow_pause(ctx, conn).await;
    match deploy::current(conn, &ctx.plugin.name).await {
        Ok(Some((version, digest))) if digest != *ctx.running().digest => {
            tracing::info!(plugin = %ctx.plugin.name, version, %digest, "a deployed version exists; running it instead of the config file's component");
            follow(ctx, conn, version, &digest).await;
        }
        Ok(Some((version, digest))) => {
            ctx.note_followed(version);
            tracing::info!(plugin = %ctx.plugin.name, version, %digest, "running the deployed version")
        }
        Ok(None) => {
            tracing::info!(plugin = %ctx.plugin.name, digest = %ctx.running().digest, "no deployed version; running the config file's component")
        }
        Err(e) => {
            tracing::warn!(plugin = %ctx.plugin.name, error = %e, "cannot read the deployed version; running the config file's component")
        }
    }
    super::canary::sync(ctx, conn).await;
}

/// Follows deployments until shutdown.
pub(crate) async fn run(
    ctx: Arc<PluginContext>,
    redis: crate::connection::Endpoint,
    mut conn: Conn,
    shutdown: CancellationToken,
) {
    let channel = DeployKeys::new(&ctx.plugin.name).channel;
    let mut attempt = 0;
    while !shutdown.is_cancelled() {
        // Without a subscription, poll once and then try to subscribe again.
        // A cluster broadcasts classic Pub/Sub to every node: any seed will do.
        let mut pubsub = match subscribe(redis.any_url(attempt), &channel).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::debug!(plugin = %ctx.plugin.name, error = %e, "cannot subscribe to deploy announcements; polling");
                None
            }
        };
        let subscribed = pubsub.is_some();
        loop {
            let announced = async {
                match pubsub.as_mut() {
                    Some(p) => p.on_message().next().await.is_some(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                alive = announced => if !alive { break },
                _ = tokio::time::sleep(POLL) => {}
                // A canary rollback or a breaker trip decided on this host
                // is recorded at once.
                _ = ctx.canary.wake.notified() => {}
                _ = ctx.breaker.wake.notified() => {}
            }
            // Act on each new deploy or rollback once (swap or refuse), so a
            // refused version is not retried in a loop and `--watch` swaps are
            // not undone; a later activation, even of the same digest, is new.
            if let Ok(Some((version, digest))) = deploy::current(&mut conn, &ctx.plugin.name).await
                && ctx.followed() != Some(version)
            {
                if digest == *ctx.running().digest {
                    ctx.note_followed(version);
                } else {
                    follow(&ctx, &mut conn, version, &digest).await;
                }
            }
            super::breaker::sync(&ctx, &mut conn).await;
            follow_pause(&ctx, &mut conn).await;
            super::canary::sync(&ctx, &mut conn).await;
            if !subscribed {
                break;
            }
        }
        attempt += 1;
        if !pause(Duration::from_millis(500), &shutdown).await {
            return;
        }
    }
}

/// Copies the plugin's pause flag from Redis into this host (see [`crate::pause`]).
async fn follow_pause(ctx: &PluginContext, conn: &mut Conn) {
    match crate::pause::status(conn, &ctx.plugin.name).await {
        Ok(record) => {
            let paused = record.is_some();
            ctx.metrics.paused.set(i64::from(paused));
            if ctx.paused.set(paused) {
                match record {
                    Some(p) => {
                        tracing::info!(plugin = %ctx.plugin.name, by = %p.by, "paused: reading no new entries; entries already read finish")
                    }
                    None => tracing::info!(plugin = %ctx.plugin.name, "resumed: reading again"),
                }
            }
        }
        Err(e) => {
            tracing::debug!(plugin = %ctx.plugin.name, error = %e, "cannot read the pause flag; keeping the last one")
        }
    }
}

async fn subscribe(url: &str, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = redis::Client::open(url)?.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Loads the deployed `digest` and swaps to it, or refuses it visibly.
async fn follow(ctx: &PluginContext, conn: &mut Conn, version: u64, digest: &str) {
    let bytes = match deploy::fetch_component(conn, digest).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            ctx.note_followed(version);
            return refuse(
                ctx,
                conn,
                digest,
                "the component is not stored in Redis".into(),
            )
            .await;
        }
        Err(e) => {
            // Not noted as followed: the next poll tries again.
            tracing::warn!(plugin = %ctx.plugin.name, error = %e, "cannot fetch the deployed component; will retry");
            return;
        }
    };
    let loaded = load(ctx, bytes, format!("deployed version {version}")).await;
    ctx.note_followed(version);
    match loaded {
        Ok(candidate) => swap(ctx, candidate, &format!("version {version}")),
        Err(e) => refuse(ctx, conn, digest, e.to_string()).await,
    }
}

fn swap(ctx: &PluginContext, candidate: LoadedPlugin, what: &str) {
    let old = ctx.running().digest.clone();
    let new = candidate.digest.clone();
    ctx.current.store(Arc::new(candidate));
    ctx.metrics.swaps.inc();
    if let Some(registry) = &ctx.registry {
        registry.set_plugin_version(&ctx.plugin.name, ctx.stream(), ctx.group(), &new);
    }
    tracing::info!(plugin = %ctx.plugin.name, from = %old, to = %new, "swapped to {what}; new entries go to it");
}

async fn refuse(ctx: &PluginContext, conn: &mut Conn, digest: &str, error: String) {
    ctx.metrics.swap_refusals.inc();
    tracing::error!(plugin = %ctx.plugin.name, %digest, %error, "refused candidate version; the running version keeps serving");
    if let Err(e) =
        deploy::record_refusal(conn, &ctx.plugin.name, &ctx.consumer, digest, &error).await
    {
        tracing::warn!(plugin = %ctx.plugin.name, error = %e, "cannot record the refusal in Redis");
    }
}

/// `run --watch`: swaps whenever the component file changes on disk.
pub(crate) async fn watch_file(
    ctx: Arc<PluginContext>,
    path: PathBuf,
    shutdown: CancellationToken,
) {
    let stamp = |p: &PathBuf| {
        std::fs::metadata(p)
            .and_then(|m| Ok((m.modified()?, m.len())))
            .ok()
    };
    let mut seen = stamp(&path);
    while pause(WATCH, &shutdown).await {
        let modified = stamp(&path);
        if modified == seen {
            continue;
        }
        seen = modified;
        // Bounded like a load at start (a FIFO or device never hangs it).
        let (name, file, limits) = (
            ctx.plugin.name.to_string(),
            path.clone(),
            ctx.config.limits.clone(),
        );
        let Ok(Ok(bytes)) = tokio::task::spawn_blocking(move || {
            crate::plugin::registry::read_component(&name, &file, &limits)
        })
        .await
        else {
            continue;
        };
        if crate::plugin::digest(&bytes) == *ctx.running().digest {
            continue;
        }
        match load(&ctx, bytes, path.display().to_string()).await {
            Ok(candidate) => swap(
                &ctx,
                candidate,
                &format!("{} (changed on disk)", path.display()),
            ),
            Err(error) => {
                ctx.metrics.swap_refusals.inc();
                tracing::error!(plugin = %ctx.plugin.name, %error, "refused the changed component file; the running version keeps serving");
            }
        }
    }
}
