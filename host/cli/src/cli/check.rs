//! `streamhost check`: everything `run` would reject, without consuming: the
//! config, every component, and (unless `--offline`) that Redis answers.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use streamhost::plugin::WasmEngine;
use streamhost::{engine_options, load_plugins};

/// How long `check` waits for Redis to answer `PING`.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Validates the config and loads every component; prints one line per
/// plugin, then pings Redis unless `offline`.
pub async fn check(config_path: &Path, offline: bool) -> anyhow::Result<ExitCode> {
    let config = super::run::load_runnable(config_path)?;
    let engine = WasmEngine::new(&engine_options(&config))?;
    let plugins = load_plugins(&config, &engine).await?;
    for (p, pc) in plugins.iter().zip(&config.plugins) {
        println!(
            "ok  {:<24} {}  {}={} group={}",
            p.name,
            p.digest,
            pc.source().config_key(),
            pc.source_key(),
            pc.group()
        );
        for effect in streamhost::unpermitted_effects(&p.effects_used, &pc.allow) {
            println!(
                "warning: plugin {:?} imports `{effect}`, but [plugin.allow] {effect} is empty: every {effect} it makes will be refused (not-allowed)",
                p.name
            );
        }
    }
    for (dlq, names) in config.shared_dlqs() {
        println!(
            "warning: plugins {} share the dead-letter stream {dlq}; each `dlq` command, \
             `status` and the DLQ gauge act on one plugin's entries only, but one plugin's \
             dead letters can crowd out another's (give each its own, the default)",
            names.join(", ")
        );
    }
    let redis = streamhost::connection::Endpoint::new(&config.redis);
    let redacted = redis.redacted();
    if offline {
        println!("--  redis {redacted} not contacted (--offline)");
    } else if redis.is_cluster() {
        super::run::check_cluster(&redis).await?;
        println!("ok  redis cluster {redacted} answers");
        let mut conn = super::connect(&redis).await?;
        for pc in &config.plugins {
            streamhost::check_source_key_type(&mut conn, pc).await?;
        }
    } else {
        ping(&redis).await.context(
            "Redis does not answer at redis.url (start it, fix the URL, or pass --offline)",
        )?;
        println!("ok  redis {redacted} answers");
        let mut conn = super::connect(&redis).await?;
        for pc in &config.plugins {
            streamhost::check_source_key_type(&mut conn, pc).await?;
        }
    }
    println!(
        "{}: {} plugin(s) valid",
        config_path.display(),
        plugins.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn ping(redis: &streamhost::connection::Endpoint) -> anyhow::Result<()> {
    let answer = async {
        let mut conn = super::connect(redis).await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        anyhow::Ok(())
    };
    tokio::time::timeout(PING_TIMEOUT, answer)
        .await
        .map_err(|_| anyhow::anyhow!("no answer to PING within {PING_TIMEOUT:?}"))?
}
