//! The circuit breaker's Redis side: when this host's trap count trips
//! (`pipeline/breaker.rs`), pause the plugin on every host with a resume
//! time (recorded in the pause record, shown by `status`); any host that
//! finds the resume time passed resumes it, so the pausing host may die.

use crate::connection::Conn;

use crate::pipeline::PluginContext;

/// One round: record a trip, resume a pause that is due.
pub(crate) async fn sync(ctx: &PluginContext, conn: &mut Conn) {
    let plugin = &*ctx.plugin.name;
    let policy = &ctx.config.breaker;
    if ctx.breaker.take_trip() {
        let reason = format!(
            "{} traps within {} ms on {}",
            policy.traps, policy.window_ms, ctx.consumer
        );
        let resume_at = crate::deploy::now_ms().saturating_add(policy.cooldown_ms);
        match crate::pause::trip(conn, plugin, &reason, resume_at).await {
            Ok(true) => {
                ctx.metrics.release.breaker_trips.inc();
                ctx.paused.set(true);
                ctx.metrics.paused.set(1);
                tracing::error!(plugin, %reason, cooldown_ms = policy.cooldown_ms,
                    "circuit breaker tripped: plugin paused on every host; it resumes after the cool-down");
            }
            Ok(false) => {
                tracing::info!(plugin, %reason, "circuit breaker tripped, but the plugin is paused already");
            }
            Err(e) => {
                tracing::warn!(plugin, error = %e, "cannot record the circuit breaker's pause; will try again");
                ctx.breaker.trip_again();
            }
        }
    }
    if policy.traps == 0 && !ctx.paused.is_paused() {
        return;
    }
    let due = match crate::pause::status(conn, plugin).await {
        Ok(Some(p)) => p.resume_at_ms,
        _ => None,
    };
    if let Some(due) = due
        && due <= crate::deploy::now_ms()
    {
        match crate::pause::resume_due(conn, plugin, due).await {
            Ok(true) => {
                ctx.paused.set(false);
                ctx.metrics.paused.set(0);
                tracing::info!(
                    plugin,
                    "circuit breaker: cool-down over, plugin resumed on every host"
                );
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(plugin, error = %e, "cannot resume after the circuit breaker's cool-down; will try again");
            }
        }
    }
}
