//! The admin HTTP endpoint (`[admin] listen`): `GET /metrics` (Prometheus),
//! `GET /healthz` (the process is alive), `GET /readyz` (Redis answers,
//! every plugin is loaded and consuming), and the dashboard at `/`
//! ([`crate::dashboard`]).
//!
//! `/metrics` is served in the OpenMetrics text format unless the scraper's
//! `Accept` header prefers the classic `text/plain; version=0.0.4`
//! ([`crate::exposition`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dashboard::{Dashboard, routes};
use crate::error::{ConfigError, Error, Result};
use crate::exposition::Format;
use crate::metrics::Metrics;

/// How long `/readyz` waits for Redis to answer `PING`.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// A client that does not send its request headers within this is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound admin socket. Bound when the host loads, so a busy port fails the
/// start and port 0 resolves to a real port before anything runs.
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// Binds `listen` (`host:port`).
    pub async fn bind(listen: &str) -> Result<Listener> {
        let cannot = |e: std::io::Error| {
            Error::Config(ConfigError::Invalid {
                key: "admin.listen".to_owned(),
                reason: format!("cannot listen on {listen:?}: {e}"),
            })
        };
        let listener = TcpListener::bind(listen).await.map_err(cannot)?;
        let addr = listener.local_addr().map_err(cannot)?;
        Ok(Listener { listener, addr })
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What `/readyz` knows about the consumers: one flag per plugin, set while
/// its consumer task runs, and whether the host is shutting down.
pub(crate) struct Readiness {
    plugins: Vec<(String, AtomicBool)>,
    stopping: AtomicBool,
}

impl Readiness {
    /// Readiness for these plugins, none consuming yet.
    pub(crate) fn new(plugins: impl IntoIterator<Item = String>) -> Arc<Readiness> {
        Arc::new(Readiness {
            plugins: plugins
                .into_iter()
                .map(|name| (name, AtomicBool::new(false)))
                .collect(),
            stopping: AtomicBool::new(false),
        })
    }

    /// Marks plugin `index` consuming until the guard is dropped (when its
    /// consumer task ends, however it ends).
    pub(crate) fn consuming(self: &Arc<Self>, index: usize) -> Consuming {
        if let Some((_, flag)) = self.plugins.get(index) {
            flag.store(true, Ordering::Release);
        }
        Consuming {
            readiness: self.clone(),
            index,
        }
    }

    /// Marks the host as draining: no longer ready for new work.
    pub(crate) fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Why the host is not ready, judged without Redis.
    fn local_reason(&self) -> Option<String> {
        if self.stopping.load(Ordering::Acquire) {
            return Some("shutting down".to_owned());
        }
        self.plugins
            .iter()
            .find(|(_, consuming)| !consuming.load(Ordering::Acquire))
            .map(|(name, _)| format!("plugin {name:?} is not consuming"))
    }
}

/// Clears a plugin's consuming flag on drop.
pub(crate) struct Consuming {
    readiness: Arc<Readiness>,
    index: usize,
}

impl Drop for Consuming {
    fn drop(&mut self) {
        if let Some((_, flag)) = self.readiness.plugins.get(self.index) {
            flag.store(false, Ordering::Release);
        }
    }
}

/// Pings Redis for `/readyz` over one cached connection, replaced after any
/// failure so a restarted Redis is found again.
struct RedisProbe {
    redis: crate::connection::Endpoint,
    conn: tokio::sync::Mutex<Option<crate::connection::Conn>>,
}

impl RedisProbe {
    async fn ping(&self) -> std::result::Result<(), String> {
        let mut cached = self.conn.lock().await;
        let attempt = async {
            let conn = match cached.as_mut() {
                Some(conn) => conn,
                None => cached.insert(self.redis.connect_once(PING_TIMEOUT).await?),
            };
            redis::cmd("PING").query_async::<String>(conn).await
        };
        let result = match tokio::time::timeout(PING_TIMEOUT, attempt).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => format!("Redis unreachable: {e}"),
            Err(_) => format!("Redis did not answer PING within {PING_TIMEOUT:?}"),
        };
        *cached = None;
        Err(result)
    }
}

/// Everything the endpoint serves from.
pub(crate) struct AdminState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    redis: RedisProbe,
    dashboard: Arc<Dashboard>,
}

impl AdminState {
    /// State for a host's metrics, readiness and Redis.
    pub(crate) fn new(
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        redis: crate::connection::Endpoint,
        dashboard: Arc<Dashboard>,
    ) -> Result<Arc<AdminState>> {
        Ok(Arc::new(AdminState {
            metrics,
            readiness,
            dashboard,
            redis: RedisProbe {
                redis,
                conn: tokio::sync::Mutex::new(None),
            },
        }))
    }

    /// `Ok` when ready, else the reason.
    pub(crate) async fn ready(&self) -> std::result::Result<(), String> {
        if let Some(reason) = self.readiness.local_reason() {
            return Err(reason);
        }
        let pinged = self.redis.ping().await;
        self.metrics.redis_up().set(i64::from(pinged.is_ok()));
        pinged
    }
}

/// Serves until `stop`, then drops open connections.
pub(crate) async fn serve(listener: Listener, state: Arc<AdminState>, stop: CancellationToken) {
    let actions = if state.dashboard.auth.actions_enabled() {
        "actions need [admin] token"
    } else {
        "read-only: no [admin] token"
    };
    tracing::info!(addr = %listener.addr, dashboard = %format!("http://{}/", listener.addr), actions, "admin endpoint listening (dashboard at /, /metrics, /healthz, /readyz)");
    if !listener.addr.ip().is_loopback() {
        tracing::warn!(addr = %listener.addr, "the admin endpoint and dashboard listen beyond loopback: anyone who reaches it sees plugin data and dead letters");
    }
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, state.clone()));
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "admin endpoint cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, peer: SocketAddr, state: Arc<AdminState>) {
    let service = hyper::service::service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(&state, request, peer).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "admin connection ended with an error");
    }
}

async fn respond(
    state: &AdminState,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let probe = matches!(request.uri().path(), "/metrics" | "/healthz" | "/readyz");
    if !probe {
        if let Some(reply) = routes::respond(&state.dashboard, request, peer).await {
            return reply;
        }
        return text(
            StatusCode::NOT_FOUND,
            "not found; try /, /metrics, /healthz or /readyz\n".to_owned(),
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".to_owned());
    }
    match request.uri().path() {
        "/metrics" => {
            let accept = request
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let format = Format::negotiate(accept);
            let mut response = text(StatusCode::OK, state.metrics.encode_as(format));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => match state.ready().await {
            Ok(()) => text(StatusCode::OK, "ready\n".to_owned()),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
