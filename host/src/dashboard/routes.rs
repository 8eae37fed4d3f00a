//! The dashboard's HTTP side: the embedded page and assets, the JSON API the
//! page reads, and the actions, each authorised by [`super::auth`] and logged
//! with who made it.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{COOKIE_NAME, Denied, SESSION_TTL};
use super::letters::{self, Chosen};
use super::{Dashboard, views};
use crate::dlq::Filter;
use crate::pipeline::PluginContext;
use crate::{deploy, pause};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Dead letters per page at most.
const MAX_PAGE: usize = 200;
/// Delay after a wrong sign-in token, so guessing is slow.
const WRONG_TOKEN_DELAY: Duration = Duration::from_millis(500);

type Reply = Response<Full<Bytes>>;

/// Answers a dashboard request; `None` when the path is not the dashboard's.
pub(crate) async fn respond(
    d: &Dashboard,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Option<Reply> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let reply = match (method.clone(), path.as_str()) {
        (Method::GET | Method::HEAD, "/" | "/index.html") => {
            asset(INDEX_HTML, "text/html; charset=utf-8")
        }
        (Method::GET | Method::HEAD, "/assets/app.js") => {
            asset(APP_JS, "text/javascript; charset=utf-8")
        }
        (Method::GET | Method::HEAD, "/assets/app.css") => {
            asset(APP_CSS, "text/css; charset=utf-8")
        }
        (_, p) if p.starts_with("/api/") => {
            let segments: Vec<String> = p["/api/".len()..].split('/').map(decode).collect();
            api(d, request, peer, &method, &segments).await
        }
        _ => return None,
    };
    Some(reply)
}

async fn api(
    d: &Dashboard,
    request: Request<Incoming>,
    peer: SocketAddr,
    method: &Method,
    segments: &[String],
) -> Reply {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    if *method == Method::POST {
        return post(d, request, peer, &seg).await;
    }
    if *method != Method::GET {
        return error(StatusCode::METHOD_NOT_ALLOWED, "GET or POST only");
    }
    let query = parse_query(request.uri().query().unwrap_or(""));
    match seg.as_slice() {
        ["session"] => {
            let session = d.auth.session(request.headers());
            json_reply(
                StatusCode::OK,
                json!({
                    "host": d.identity(),
                    "actions": d.auth.actions_enabled(),
                    "user": session.as_ref().map(|s| s.user.clone()),
                    "csrf": session.map(|s| s.csrf),
                }),
            )
        }
        ["overview"] => {
            let conn = d.redis().await.ok();
            let mut conn = conn;
            let view = views::overview(d, conn.as_mut()).await;
            if view["redis"]["up"] != json!(true) {
                d.reset_redis().await;
            }
            json_reply(StatusCode::OK, view)
        }
        ["plugins", name, rest @ ..] => {
            let Some(ctx) = d.plugin(name) else {
                return error(StatusCode::NOT_FOUND, "no such plugin on this host");
            };
            let mut conn = match d.redis().await {
                Ok(c) => c,
                Err(e) => return redis_down(d, e).await,
            };
            let result = match rest {
                [] => views::plugin(d, ctx, &mut conn).await,
                ["dlq"] => {
                    let filter = filter_of(ctx, &query);
                    let limit = query
                        .iter()
                        .find(|(k, _)| k == "limit")
                        .and_then(|(_, v)| v.parse().ok())
                        .unwrap_or(50usize)
                        .clamp(1, MAX_PAGE);
                    let before = query
                        .iter()
                        .find(|(k, _)| k == "before")
                        .map(|(_, v)| v.as_str());
                    views::dead_letters(ctx, &mut conn, &filter, before, limit).await
                }
                ["dlq", id] => {
                    match letters::one(&mut conn, &ctx.dlq_stream, &letters::owner(ctx), id).await {
                        Ok(Some(letter)) => Ok(views::message(ctx, &letter)),
                        Ok(None) => {
                            return error(
                                StatusCode::NOT_FOUND,
                                "no such dead letter (replayed or purged?)",
                            );
                        }
                        Err(e) => Err(e.into()),
                    }
                }
                _ => return error(StatusCode::NOT_FOUND, "not found"),
            };
            match result {
                Ok(v) => json_reply(StatusCode::OK, v),
                Err(e) => {
                    d.reset_redis().await;
                    error(StatusCode::BAD_GATEWAY, &format!("Redis: {e}"))
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn redis_down(d: &Dashboard, e: redis::RedisError) -> Reply {
    d.reset_redis().await;
    error(StatusCode::BAD_GATEWAY, &format!("Redis unreachable: {e}"))
}

fn filter_of(ctx: &PluginContext, query: &[(String, String)]) -> Filter {
    let get = |k: &str| {
        query
            .iter()
            .find(|(n, v)| n == k && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    letters::filter(ctx, get("reason"), get("text"))
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
enum ActionError {
    /// The host or Redis failed.
    #[error(transparent)]
    Host(#[from] crate::Error),
    /// A dead-letter operation failed.
    #[error(transparent)]
    Dlq(#[from] crate::dlq::DlqError),
    /// The request lacks a field the action needs.
    #[error("{action} needs `{field}` in the request body")]
    Missing {
        /// The action.
        action: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

/// What an action's body may carry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    /// Sign-in: the token.
    token: Option<String>,
    /// Sign-in: the operator's name, for the log.
    user: Option<String>,
    /// Rollback: the version to make current (default: the one before).
    version: Option<u64>,
    /// Replay: these dead-letter ids.
    ids: Option<Vec<String>>,
    /// Replay: every letter matching this reason...
    reason: Option<String>,
    /// ...and this text.
    text: Option<String>,
    /// Replay: everything matching reason/text rather than `ids`.
    all: Option<bool>,
    /// Purge: letters dead-lettered before this time (Unix ms).
    before_ms: Option<u64>,
}

async fn post(d: &Dashboard, request: Request<Incoming>, peer: SocketAddr, seg: &[&str]) -> Reply {
    let (parts, body) = request.into_parts();
    let body = match read_body(body).await {
        Ok(b) => b,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    match seg {
        ["login"] => {
            // Not an action, but a cross-origin page must not sign a
            // victim's browser in either.
            if !super::auth::same_origin(&parts.headers) {
                return denied(Denied::Origin);
            }
            let (token, user) = (
                body.token.unwrap_or_default(),
                body.user.unwrap_or_default(),
            );
            match d.auth.sign_in(&token, &user) {
                Ok((id, info)) => {
                    tracing::info!(user = %info.user, from = %peer.ip(), "dashboard: signed in");
                    let mut reply = json_reply(
                        StatusCode::OK,
                        json!({ "user": info.user, "csrf": info.csrf }),
                    );
                    let cookie = format!(
                        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                        SESSION_TTL.as_secs()
                    );
                    if let Ok(v) = HeaderValue::from_str(&cookie) {
                        reply.headers_mut().insert(SET_COOKIE, v);
                    }
                    reply
                }
                Err(e) => {
                    tracing::warn!(from = %peer.ip(), reason = %e, "dashboard: sign-in refused");
                    tokio::time::sleep(WRONG_TOKEN_DELAY).await;
                    denied(e)
                }
            }
        }
        ["logout"] => {
            d.auth.sign_out(&parts.headers);
            let mut reply = json_reply(StatusCode::OK, json!({ "ok": true }));
            reply.headers_mut().insert(
                SET_COOKIE,
                HeaderValue::from_static(
                    "streamhost_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                ),
            );
            reply
        }
        ["plugins", name, action @ ..] => {
            let who = match d.auth.authorize(&parts.headers, peer) {
                Ok(who) => who,
                Err(e) => {
                    tracing::warn!(from = %peer.ip(), plugin = %name, action = %action.join("/"), reason = %e, "dashboard: action refused");
                    return denied(e);
                }
            };
            let Some(ctx) = d.plugin(name) else {
                return error(StatusCode::NOT_FOUND, "no such plugin on this host");
            };
            let mut conn = match d.redis().await {
                Ok(c) => c,
                Err(e) => return redis_down(d, e).await,
            };
            let action = action.join("/");
            let result = act(ctx, &mut conn, &action, body, &who).await;
            match result {
                Ok(Some(v)) => {
                    tracing::info!(who = %who, plugin = %name, action = %action, result = %v, "dashboard action");
                    json_reply(StatusCode::OK, v)
                }
                Ok(None) => error(StatusCode::NOT_FOUND, "no such action"),
                Err(e) => {
                    tracing::warn!(who = %who, plugin = %name, action = %action, error = %e, "dashboard action failed");
                    error(StatusCode::BAD_REQUEST, &e.to_string())
                }
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn act(
    ctx: &PluginContext,
    conn: &mut crate::connection::Conn,
    action: &str,
    body: ActionBody,
    who: &str,
) -> Result<Option<Value>, ActionError> {
    let plugin = &*ctx.plugin.name;
    let v = match action {
        "pause" => json!({ "paused": pause::pause(conn, plugin, who).await? }),
        "resume" => json!({ "resumed": pause::resume(conn, plugin).await? }),
        "rollback" => {
            let v = deploy::rollback(conn, plugin, body.version, who).await?;
            json!({ "version": v.version, "digest": v.digest, "action": v.action })
        }
        "dlq/replay" => {
            let filter = letters::filter(ctx, body.reason, body.text);
            let chosen = if body.all == Some(true) {
                Chosen::Matching
            } else {
                Chosen::Ids(body.ids.unwrap_or_default())
            };
            let asked = match &chosen {
                Chosen::Ids(ids) => Some(ids.len()),
                Chosen::Matching => None,
            };
            let r = letters::replay(conn, &ctx.dlq_stream, &filter, chosen).await?;
            json!({
                "asked": asked,
                "replayed": r.replayed,
                "gone": r.gone,
                "not_replayable": r.not_replayable,
                "unknown": r.unknown,
            })
        }
        "dlq/purge" => {
            let Some(before_ms) = body.before_ms else {
                return Err(ActionError::Missing {
                    action: "dlq/purge",
                    field: "before_ms",
                });
            };
            let purged =
                letters::purge_before(conn, &ctx.dlq_stream, letters::owner(ctx), before_ms)
                    .await?;
            json!({ "purged": purged, "before_ms": before_ms })
        }
        _ => return Ok(None),
    };
    Ok(Some(v))
}

async fn read_body(body: Incoming) -> Result<ActionBody, String> {
    let collected = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect())
        .await
        .map_err(|_| "request body not received in time".to_owned())?
        .map_err(|e| format!("request body unreadable or over {MAX_BODY} bytes: {e}"))?
        .to_bytes();
    if collected.is_empty() {
        return Ok(ActionBody::default());
    }
    serde_json::from_slice(&collected)
        .map_err(|e| format!("request body is not the expected JSON: {e}"))
}

fn asset(body: &'static str, content_type: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    security_headers(h);
    r
}

fn security_headers(h: &mut hyper::HeaderMap) {
    let set = |h: &mut hyper::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    );
    set(h, "x-frame-options", "DENY");
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
}

fn json_reply(status: StatusCode, v: Value) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(h);
    r
}

fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, json!({ "error": message }))
}

fn denied(e: Denied) -> Reply {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::FORBIDDEN);
    error(status, &e.to_string())
}

/// `a=1&b=x%20y` into pairs (`+` is a space).
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Percent-decoding; invalid escapes stay as they are, invalid UTF-8 is
/// replaced (names the page sent came from this host's own JSON).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_paths_decode() {
        assert_eq!(decode("a%20b%2Fc%zz"), "a b/c%zz");
        assert_eq!(
            parse_query("reason=trap&text=a+b%26c&x"),
            vec![
                ("reason".into(), "trap".into()),
                ("text".into(), "a b&c".into()),
                ("x".into(), "".into())
            ]
        );
    }
}
