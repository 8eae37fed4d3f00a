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
        if p.wit_package != streamhost::plugin::WIT_PACKAGES[0]
            && !matches!(pc.source(), streamhost::config::SourceKind::Stream(_))
        {
            println!(
                "note: plugin {:?} is built against {}, which has no message source: on its {} source it sees the key (for Pub/Sub, the channel) as `message.stream` and the payload in field `data`; rebuild it against {} to see the source, channel, pattern or score",
                p.name,
                p.wit_package,
                pc.source().config_key(),
                streamhost::plugin::WIT_PACKAGES[0],
            );
        }
        let refused = streamhost::unpermitted_effects(&p.effects_used, &pc.allow);
        if refused.is_empty() {
            continue;
        }
        if streamhost::imports_every_effect(&p.effects_used) {
            // Which it calls cannot be read from the component: one line, not one per effect.
            println!(
                "warning: plugin {:?} imports every effect function (the Python and JS toolchains \
                 import the whole interface, whatever the handler calls); [plugin.allow] {} \
                 empty, so any {} it makes will be refused at run time (not-allowed)",
                p.name,
                list(
                    &refused,
                    " and ",
                    if refused.len() == 1 { "is" } else { "are" }
                ),
                list(&refused, " or ", "")
            );
        } else {
            for effect in refused {
                println!(
                    "warning: plugin {:?} imports `{effect}`, but [plugin.allow] {effect} is empty: every {effect} it makes will be refused (not-allowed)",
                    p.name
                );
            }
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

/// `a`, `a and b`, `a, b and c` (with `word` between the last two), then `tail`.
fn list(items: &[&str], word: &str, tail: &str) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    let text = match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{}{word}{last}", rest.join(", ")),
        None => String::new(),
    };
    if tail.is_empty() {
        text
    } else {
        format!("{text} {tail}")
    }
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
