//! Follows a plugin's canary or shadow in Redis (`deploy --canary` or
//! `--shadow`, `promote`, `rollback`, see [`crate::release`]): loads the
//! candidate once per deploy and hands it to the routing
//! (`pipeline/canary.rs`) or starts its shadow runner (`shadow.rs`), stops
//! either when it ends, and records a rollback this host decided so every
//! host follows it.

use std::sync::Arc;

use crate::connection::Conn;
use crate::release::Mode;

use crate::pipeline::PluginContext;
use crate::pipeline::canary::Candidate;
use crate::release::{self, State};

/// One round: record a rollback decided here, then follow the record.
pub(crate) async fn sync(ctx: &PluginContext, conn: &mut Conn) {
    let plugin = &*ctx.plugin.name;
    super::shadow::report_dropped(ctx, conn).await;
    if let Some(decided) = ctx.canary.take_decision() {
        ctx.metrics.release.canary_share.set(0.0);
        let why = format!(
            "rolled back automatically by {}: {}",
            ctx.consumer, decided.why
        );
        match release::roll_back_automatically(conn, plugin, &decided.digest, &why).await {
            Ok(true) => {
                ctx.metrics.release.canary_rollbacks.inc();
                tracing::error!(plugin, candidate = %decided.digest, why = %decided.why,
                    "canary rolled back automatically: every host stops routing to the candidate");
            }
            Ok(false) => {
                tracing::info!(plugin, candidate = %decided.digest, "the canary had already ended; nothing to roll back");
            }
            Err(e) => {
                tracing::warn!(plugin, error = %e, "cannot record the canary's rollback in Redis; this host stopped routing to it and will record it again");
                ctx.canary.restore_decision(decided);
            }
        }
    }
    let record = match release::canary(conn, plugin).await {
        Ok(record) => record,
        Err(e) => {
            tracing::debug!(plugin, error = %e, "cannot read the canary record; keeping the last one");
            return;
        }
    };
    match record {
        Some(c) if c.state == State::Active => {
            if ctx.canary.followed().as_deref() == Some(&c.seed) {
                return;
            }
            ctx.canary.note_followed(&c.seed);
            stop(ctx);
            if c.digest == *ctx.running().digest {
                return;
            }
            match load(ctx, conn, &c.digest).await {
                Ok(candidate) if c.mode == Mode::Shadow => {
                    ctx.shadow
                        .set(Some(super::shadow::spawn(ctx, candidate, conn.clone())));
                    ctx.metrics.release.shadow_running.set(1);
                    tracing::info!(plugin, candidate = %c.digest, stable = %ctx.running().digest,
                        "shadow started: the candidate runs on a copy of each entry handled, its effects never committed");
                }
                Ok(candidate) => {
                    ctx.canary.set(Some(Candidate::new(
                        Arc::new(candidate),
                        c.share_ppm,
                        &c.seed,
                    )));
                    ctx.metrics
                        .release
                        .canary_share
                        .set(f64::from(c.share_ppm) / f64::from(release::PPM));
                    tracing::info!(plugin, candidate = %c.digest, stable = %ctx.running().digest,
                        share = %format!("{:.2}%", f64::from(c.share_ppm) / 1e4),
                        "canary started: routing a share of entries to the candidate");
                }
                Err(error) => {
                    ctx.metrics.swap_refusals.inc();
                    tracing::error!(plugin, candidate = %c.digest, %error, "refused the candidate; every entry stays on the running version");
                    if let Err(e) = crate::deploy::record_refusal(
                        conn,
                        plugin,
                        &ctx.consumer,
                        &c.digest,
                        &error,
                    )
                    .await
                    {
                        tracing::warn!(plugin, error = %e, "cannot record the refusal in Redis");
                    }
                }
            }
        }
        Some(c) => {
            ctx.canary.note_followed(&c.seed);
            if stop(ctx) {
                tracing::info!(plugin, candidate = %c.digest, mode = c.mode.as_str(), state = c.state.as_str(), ended = %c.ended,
                    "candidate no longer tried: every entry goes to the current version alone");
            }
        }
        None => {
            if stop(ctx) {
                tracing::info!(
                    plugin,
                    "release record gone: every entry goes to the current version alone"
                );
            }
        }
    }
}

/// Stops routing to a canary and shadowing; returns whether either ran.
fn stop(ctx: &PluginContext) -> bool {
    ctx.metrics.release.canary_share.set(0.0);
    ctx.metrics.release.shadow_running.set(0);
    let shadowed = ctx.shadow.stop();
    ctx.canary.take_candidate() || shadowed
}

/// Fetches and loads the candidate like a deployed version.
async fn load(
    ctx: &PluginContext,
    conn: &mut Conn,
    digest: &str,
) -> Result<crate::plugin::LoadedPlugin, String> {
    let bytes = match crate::deploy::fetch_component(conn, digest).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err("the component is not stored in Redis".into()),
        Err(e) => return Err(format!("cannot fetch the component: {e}")),
    };
    super::loader::load(ctx, bytes, format!("canary candidate {digest}"))
        .await
        .map_err(|e| e.to_string())
}
