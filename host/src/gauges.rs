//! The gauge refresher: one task per plugin that periodically copies Redis's
//! view of the plugin's group (lag, oldest pending age, DLQ length) into the
//! metrics, so a scrape only reads atomics and never waits on Redis.

use std::time::Duration;

use crate::connection::Conn;
use tokio_util::sync::CancellationToken;

use crate::config::PluginConfig;
use crate::inspect;
use crate::metrics::GroupGauges;
use crate::shutdown::pause;

/// Response timeout for the refresher's queries: a slow Redis delays the
/// gauges, never the consumers (they have connections of their own).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Refreshes `gauges` every `interval` until `shutdown`.
pub(crate) async fn run(
    plugin: PluginConfig,
    gauges: GroupGauges,
    redis: crate::connection::Endpoint,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let conn = match redis.connect(QUERY_TIMEOUT, &shutdown).await {
        Ok(Some(conn)) => conn,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(plugin = %plugin.name, error = %e, "gauge refresher cannot connect; group gauges stay empty");
            return;
        }
    };
    let mut conn = conn;
    loop {
        let refreshed = refresh(&plugin, &gauges, &mut conn).await;
        gauges.set_redis_reached(refreshed.is_ok());
        if let Err(e) = refreshed {
            tracing::debug!(plugin = %plugin.name, error = %e, "cannot refresh group gauges");
        }
        if !pause(interval, &shutdown).await {
            return;
        }
    }
}

/// One refresh: `XINFO GROUPS`, the `XPENDING` summary, the plugin's own
/// entries in its DLQ and Redis's clock.
pub(crate) async fn refresh(
    plugin: &PluginConfig,
    gauges: &GroupGauges,
    conn: &mut Conn,
) -> crate::Result<()> {
    // Lag and pending age are consumer-group figures: other sources have none.
    let group = if plugin.stream.is_empty() {
        None
    } else {
        inspect::group(conn, &plugin.stream, plugin.group()).await?
    };
    gauges.set_lag(group.as_ref().and_then(|g| g.lag));
    let oldest = match &group {
        Some(g) if g.pending > 0 => {
            inspect::pending_summary(conn, &plugin.stream, plugin.group())
                .await?
                .smallest_id
        }
        _ => None,
    };
    let age_ms = match oldest {
        Some(id) => {
            let now = inspect::server_time_ms(conn).await?;
            inspect::age_ms(&id, now).unwrap_or(0)
        }
        None => 0,
    };
    gauges
        .oldest_pending_age_seconds
        .set(age_ms as f64 / 1000.0);
    let dlq = crate::dlq::owned_count(
        conn,
        &plugin.dlq_stream(),
        &plugin.dlq_owner(),
        plugin.dlq_is_own(),
    )
    .await?;
    gauges
        .dlq_entries
        .set(i64::try_from(dlq).unwrap_or(i64::MAX));
    Ok(())
}
