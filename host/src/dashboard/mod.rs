//! The web dashboard on the admin listener: an overview of every plugin,
//! plugin pages, dead-letter pages and a message page, drawn by embedded
//! HTML/CSS/JS from the JSON under `/api/`. Read-only unless `[admin] token`
//! is set; actions (pause/resume, rollback, replay, purge) go through
//! [`auth`] and are logged with who made them.
//!
//! Layout: [`auth`] who may act, [`history`] the charts' bounded memory,
//! [`letters`] dead-letter queries, [`pretty`] how stored bytes are shown,
//! [`views`] the JSON of each page, [`routes`] the HTTP side.

pub(crate) mod auth;
pub(crate) mod history;
pub(crate) mod letters;
pub(crate) mod pretty;
pub(crate) mod routes;
pub(crate) mod views;

use std::sync::Arc;
use std::time::Duration;

use crate::connection::Conn;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::PluginContext;

/// Response timeout of the dashboard's Redis queries.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the dashboard serves from.
pub(crate) struct Dashboard {
    /// Every plugin's context, in config order.
    pub plugins: Vec<Arc<PluginContext>>,
    metrics: Arc<Metrics>,
    /// Streams with a `[[retention]]` rule.
    retention_streams: Vec<String>,
    /// Who may act.
    pub auth: auth::Auth,
    history: history::History,
    redis: crate::connection::Endpoint,
    conn: tokio::sync::Mutex<Option<Conn>>,
    host: String,
}

impl Dashboard {
    /// A dashboard over these plugins.
    pub(crate) fn new(
        config: &Config,
        plugins: Vec<Arc<PluginContext>>,
        metrics: Arc<Metrics>,
    ) -> crate::Result<Arc<Dashboard>> {
        let token = config
            .admin
            .as_ref()
            .and_then(|a| a.token.as_ref())
            .map(|t| t.expose().to_owned());
        Ok(Arc::new(Dashboard {
            history: history::History::new(plugins.len()),
            plugins,
            metrics,
            retention_streams: config.retention.iter().map(|r| r.stream.clone()).collect(),
            auth: auth::Auth::new(token),
            redis: crate::connection::Endpoint::new(&config.redis),
            conn: tokio::sync::Mutex::new(None),
            host: hostname(),
        }))
    }

    /// Which host this is (the page names it: a fleet has several).
    pub(crate) fn identity(&self) -> Value {
        json!({
            "hostname": self.host,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "wit": crate::metrics::WIT_VERSION,
            "consumers": self.plugins.iter().map(|p| p.consumer.clone()).collect::<Vec<_>>(),
            "actions": self.auth.actions_enabled(),
        })
    }

    /// The plugin named `name`.
    pub(crate) fn plugin(&self, name: &str) -> Option<&Arc<PluginContext>> {
        self.plugins.iter().find(|p| &*p.plugin.name == name)
    }

    /// A connection to Redis, made on first use and again after a failure.
    pub(crate) async fn redis(&self) -> Result<Conn, redis::RedisError> {
        let mut cached = self.conn.lock().await;
        if let Some(c) = cached.as_ref() {
            return Ok(c.clone());
        }
        let conn = self.redis.connect_once(QUERY_TIMEOUT).await?;
        Ok(cached.insert(conn).clone())
    }

    /// Forgets the connection after an error, so the next request reconnects.
    pub(crate) async fn reset_redis(&self) {
        *self.conn.lock().await = None;
    }

    /// Samples every plugin's counters into the history until `stop`.
    pub(crate) async fn sample(self: Arc<Self>, stop: CancellationToken) {
        loop {
            for (i, ctx) in self.plugins.iter().enumerate() {
                let m = &ctx.metrics;
                let dlq = self
                    .metrics
                    .group_gauges(&ctx.plugin.name, ctx.stream())
                    .dlq_entries
                    .get();
                self.history.push(
                    i,
                    history::Point {
                        at_ms: history::now_ms(),
                        received: m.received.get(),
                        acked: m.acked.get(),
                        dead_lettered: m.dead_lettered.get(),
                        dlq,
                    },
                );
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(history::SAMPLE_EVERY) => {}
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
