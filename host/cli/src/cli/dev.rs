//! `streamhost dev`: the inner loop. Builds the project, starts a private
//! redis-server (as `demo` does), runs the plugin on it, feeds it the
//! fixtures and prints each outcome as it happens; on a source change it
//! rebuilds, restarts the plugin on the new component and feeds them again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use streamhost::Host;
use streamhost::Outcome;
use streamhost::display::escape_str;
use streamhost::local_redis::LocalRedis;
use streamhost::plugin::WasmEngine;
use streamhost::{engine_options, load_plugins};

/// How often sources are checked for changes.
const POLL: Duration = Duration::from_millis(500);
/// How long `--once` waits for every fixture's outcome.
const ONCE_TIMEOUT: Duration = Duration::from_secs(120);

/// Arguments of `streamhost dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// The project directory.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The config (relative to `--dir`); its first plugin runs.
    #[arg(short, long, default_value = "streamhost.toml")]
    pub config: PathBuf,
    /// The messages fed on every (re)start (relative to `--dir`).
    #[arg(long, default_value = "fixtures.jsonl")]
    pub fixtures: PathBuf,
    /// Feed the fixtures once, print their outcomes, and exit (1 if any trapped).
    #[arg(long)]
    pub once: bool,
}

/// Outcomes seen since the last (re)start.
#[derive(Default)]
struct Seen {
    total: AtomicU64,
    traps: AtomicU64,
}

/// Runs until SIGINT/SIGTERM (or, with `--once`, until every fixture settled once).
pub async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    let config_path = args.dir.join(&args.config);
    let fixtures = super::fixtures::read(&args.dir.join(&args.fixtures))?;
    println!("building {} ...", args.dir.display());
    super::build::build_project(&args.dir, &config_path).await?;
    println!("starting a private redis-server");
    let redis = tokio::task::spawn_blocking(LocalRedis::start)
        .await
        .context("the redis-server thread failed")??;
    let shutdown = CancellationToken::new();
    streamhost::cancel_on_signal(shutdown.clone());
    let mut stamp = sources_stamp(&args.dir);
    loop {
        let seen = Arc::new(Seen::default());
        let mut config = super::load_config(&config_path)?;
        config.redis.url = redis.url();
        config.plugins.truncate(1);
        let Some(plugin) = config.plugins.first().cloned() else {
            anyhow::bail!(super::BadInput(format!(
                "{} has no [[plugin]]",
                config_path.display()
            )));
        };
        let host = match start(&config, seen.clone()).await {
            Ok(host) => host,
            Err(e) if !args.once => {
                println!("error: {e:#}; fix it and save to rebuild");
                stamp = wait_for_change(&args.dir, stamp, &shutdown).await;
                if shutdown.is_cancelled() {
                    return Ok(ExitCode::SUCCESS);
                }
                rebuild(&args.dir, &config_path).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let stop = CancellationToken::new();
        let running = tokio::spawn(host.run(stop.clone()));
        let mut conn =
            super::connect(&streamhost::connection::Endpoint::single(&redis.url())).await?;
        for fixture in &fixtures {
            let mut cmd = redis::cmd("XADD");
            cmd.arg(&plugin.stream).arg("*");
            for (name, value) in &fixture.fields {
                cmd.arg(name).arg(value);
            }
            let _: String = cmd
                .query_async(&mut conn)
                .await
                .context("XADD of a fixture")?;
        }
        println!(
            "fed {} fixture(s) to {} (plugin {})",
            fixtures.len(),
            plugin.stream,
            plugin.name
        );
        if args.once {
            let all = fixtures.len() as u64;
            let done = tokio::time::timeout(ONCE_TIMEOUT, async {
                while seen.total.load(Ordering::Relaxed) < all {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            stop.cancel();
            let _ = running.await;
            anyhow::ensure!(
                done.is_ok(),
                "not every fixture was handled within {ONCE_TIMEOUT:?}"
            );
            return Ok(if seen.traps.load(Ordering::Relaxed) > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        stamp = wait_for_change(&args.dir, stamp, &shutdown).await;
        stop.cancel();
        let _ = running.await;
        if shutdown.is_cancelled() {
            return Ok(ExitCode::SUCCESS);
        }
        rebuild(&args.dir, &config_path).await;
    }
}

async fn rebuild(dir: &Path, config_path: &Path) {
    println!("source changed: rebuilding ...");
    if let Err(e) = super::build::build_project(dir, config_path).await {
        println!("build failed: {e:#}");
    }
}

/// Loads the plugin with a tap that prints each outcome as it happens.
async fn start(config: &streamhost::Config, seen: Arc<Seen>) -> anyhow::Result<Host> {
    let engine = WasmEngine::new(&engine_options(config))?;
    let mut plugins = load_plugins(config, &engine).await?;
    let loaded = plugins.pop().context("one plugin")?;
    let loaded = Arc::try_unwrap(loaded)
        .map_err(|_| anyhow::anyhow!("the loaded plugin is shared"))?
        .with_tap(Arc::new(move |msg, outcome| {
            let text = match outcome {
                Outcome::Ok => "ok".to_owned(),
                Outcome::Retry(r) => format!("retry: {}", escape_str(r)),
                Outcome::Reject(r) => format!("reject: {}", escape_str(r)),
                Outcome::Trap(kind, d) => {
                    seen.traps.fetch_add(1, Ordering::Relaxed);
                    format!("trap ({kind}): {}", escape_str(d))
                }
            };
            seen.total.fetch_add(1, Ordering::Relaxed);
            println!("{} attempt {}: {text}", msg.id, msg.attempt);
        }));
    Ok(Host::with_plugins(config.clone(), vec![Arc::new(loaded)])?)
}

/// The newest modification time among the project's sources.
fn sources_stamp(dir: &Path) -> Option<SystemTime> {
    super::build::sources(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .max()
}

async fn wait_for_change(
    dir: &Path,
    stamp: Option<SystemTime>,
    shutdown: &CancellationToken,
) -> Option<SystemTime> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return stamp,
            () = tokio::time::sleep(POLL) => {}
        }
        let now = sources_stamp(dir);
        if now != stamp {
            return now;
        }
    }
}
