//! The promoter: moves this plugin's scheduled entries (effects of
//! `schedule`) onto their target streams when due.

use std::sync::Arc;

use crate::connection::Conn;
use tokio_util::sync::CancellationToken;

use crate::effects::{PROMOTE_INTERVAL, promote_due};
use crate::pipeline::PluginContext;
use crate::shutdown::pause;

/// Runs until shutdown. Several hosts may promote the same set: each move is
/// one atomic script, so an entry is delivered once whoever moves it.
pub(crate) async fn run(ctx: Arc<PluginContext>, mut conn: Conn, shutdown: CancellationToken) {
    let key = ctx.plugin.effects.schedule_key.clone();
    while pause(PROMOTE_INTERVAL, &shutdown).await {
        match promote_due(&mut conn, &key).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(plugin = %ctx.plugin.name, moved = n, "scheduled entries delivered")
            }
            Err(e) => {
                tracing::warn!(plugin = %ctx.plugin.name, error = %e, "promoting scheduled entries failed")
            }
        }
    }
}
