//! Who may act on the dashboard: the `[admin] token` as a bearer header, or a
//! session from the sign-in form (an HttpOnly, SameSite=Strict cookie). Every
//! action made with a session also carries the session's CSRF token in a
//! header and an `Origin` equal to the page's own; sessions are bounded in
//! number and lifetime.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};

/// The session cookie's name.
pub(crate) const COOKIE_NAME: &str = "streamhost_session";
/// The header carrying the CSRF token.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most sessions at once; the oldest is dropped beyond this.
const MAX_SESSIONS: usize = 256;
/// Longest operator name kept.
const MAX_USER: usize = 64;

/// Why an action was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Denied {
    /// No `[admin] token` is configured.
    #[error("the dashboard is read-only: set [admin] token to enable actions")]
    ReadOnly,
    /// Neither a valid bearer token nor a session.
    #[error("sign in first (or send Authorization: Bearer <[admin] token>)")]
    Unauthenticated,
    /// A session without the matching CSRF header.
    #[error("missing or wrong x-csrf-token header for this session")]
    Csrf,
    /// A cross-origin request.
    #[error("request comes from another origin")]
    Origin,
    /// A wrong token at sign-in.
    #[error("wrong token")]
    WrongToken,
}

impl Denied {
    /// The HTTP status for this refusal.
    pub(crate) fn status(self) -> u16 {
        match self {
            Denied::ReadOnly | Denied::Csrf | Denied::Origin => 403,
            Denied::Unauthenticated | Denied::WrongToken => 401,
        }
    }
}

struct Session {
    user: String,
    csrf: String,
    expires: Instant,
}

/// A signed-in session, as the page sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionInfo {
    /// The operator's name as given at sign-in.
    pub user: String,
    /// The token the page sends in [`CSRF_HEADER`].
    pub csrf: String,
}

/// The token and the open sessions.
pub(crate) struct Auth {
    token: Option<String>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl Auth {
    /// Actions enabled with `token`, or read-only without one.
    pub(crate) fn new(token: Option<String>) -> Auth {
        Auth {
            token,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether actions are possible at all.
    pub(crate) fn actions_enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Opens a session for `user` if `token` is right; returns the cookie
    /// value and the session.
    pub(crate) fn sign_in(&self, token: &str, user: &str) -> Result<(String, SessionInfo), Denied> {
        let expected = self.token.as_deref().ok_or(Denied::ReadOnly)?;
        if !same(token.as_bytes(), expected.as_bytes()) {
            return Err(Denied::WrongToken);
        }
        let id = random_hex();
        let info = SessionInfo {
            user: clean_user(user),
            csrf: random_hex(),
        };
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                user: info.user.clone(),
                csrf: info.csrf.clone(),
                expires: now + SESSION_TTL,
            },
        );
        Ok((id, info))
    }

    /// Ends the session of this request, if any.
    pub(crate) fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers) {
            self.lock().remove(&id);
        }
    }

    /// The session this request belongs to, if valid.
    pub(crate) fn session(&self, headers: &HeaderMap) -> Option<SessionInfo> {
        let id = session_cookie(headers)?;
        let sessions = self.lock();
        let s = sessions.get(&id).filter(|s| s.expires > Instant::now())?;
        Some(SessionInfo {
            user: s.user.clone(),
            csrf: s.csrf.clone(),
        })
    }

    /// Checks an action request; returns who is acting (for the log).
    pub(crate) fn authorize(
        &self,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> Result<String, Denied> {
        let expected = self.token.as_deref().ok_or(Denied::ReadOnly)?;
        if !same_origin(headers) {
            return Err(Denied::Origin);
        }
        if let Some(bearer) =
            header(headers, AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer "))
        {
            return if same(bearer.trim().as_bytes(), expected.as_bytes()) {
                Ok(format!("bearer token from {}", peer.ip()))
            } else {
                Err(Denied::Unauthenticated)
            };
        }
        let session = self.session(headers).ok_or(Denied::Unauthenticated)?;
        // A session rides on a cookie the browser attaches by itself: the
        // CSRF header and the Origin prove the page sent it.
        if header(headers, ORIGIN.as_str()).is_none() {
            return Err(Denied::Origin);
        }
        match header(headers, CSRF_HEADER) {
            Some(csrf) if same(csrf.as_bytes(), session.csrf.as_bytes()) => {
                Ok(format!("{} from {}", session.user, peer.ip()))
            }
            _ => Err(Denied::Csrf),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// No `Origin` (not a browser, or a same-origin GET), or one naming the
/// `Host` the request was sent to.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = header(headers, ORIGIN.as_str()) else {
        return true;
    };
    let Some(host) = header(headers, HOST.as_str()) else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_owned())
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 24]>())
}

/// Printable characters only, bounded: the name goes into log lines.
fn clean_user(user: &str) -> String {
    let cleaned: String = user
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER)
        .collect();
    match cleaned.trim() {
        "" => "anonymous".to_owned(),
        name => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const TOKEN: &str = "0123456789abcdef0123";

    fn peer() -> SocketAddr {
        "127.0.0.1:5000".parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn read_only_without_a_token() {
        let auth = Auth::new(None);
        assert_eq!(auth.authorize(&headers(&[]), peer()), Err(Denied::ReadOnly));
        assert_eq!(
            auth.sign_in("anything", "me").map(|_| ()),
            Err(Denied::ReadOnly)
        );
    }

    #[test]
    fn bearer_token_must_match() {
        let auth = Auth::new(Some(TOKEN.into()));
        let ok = headers(&[("authorization", &format!("Bearer {TOKEN}"))]);
        assert!(
            auth.authorize(&ok, peer())
                .unwrap()
                .starts_with("bearer token")
        );
        let bad = headers(&[("authorization", "Bearer nope")]);
        assert_eq!(auth.authorize(&bad, peer()), Err(Denied::Unauthenticated));
        assert_eq!(
            auth.authorize(&headers(&[]), peer()),
            Err(Denied::Unauthenticated)
        );
    }

    #[test]
    fn sessions_need_csrf_and_same_origin() {
        let auth = Auth::new(Some(TOKEN.into()));
        assert_eq!(
            auth.sign_in("wrong", "ann").map(|_| ()),
            Err(Denied::WrongToken)
        );
        let (id, info) = auth.sign_in(TOKEN, "ann\x1b[31m").unwrap();
        assert_eq!(info.user, "ann[31m", "control characters dropped");
        let cookie = format!("other=1; {COOKIE_NAME}={id}");
        let good = headers(&[
            ("cookie", &cookie),
            ("host", "127.0.0.1:9464"),
            ("origin", "http://127.0.0.1:9464"),
            ("x-csrf-token", &info.csrf),
        ]);
        assert!(
            auth.authorize(&good, peer())
                .unwrap()
                .starts_with("ann[31m from")
        );
        let no_csrf = headers(&[
            ("cookie", &cookie),
            ("host", "127.0.0.1:9464"),
            ("origin", "http://127.0.0.1:9464"),
        ]);
        assert_eq!(auth.authorize(&no_csrf, peer()), Err(Denied::Csrf));
        let cross = headers(&[
            ("cookie", &cookie),
            ("host", "127.0.0.1:9464"),
            ("origin", "http://evil.example"),
            ("x-csrf-token", &info.csrf),
        ]);
        assert_eq!(auth.authorize(&cross, peer()), Err(Denied::Origin));
        let no_origin = headers(&[
            ("cookie", &cookie),
            ("host", "127.0.0.1:9464"),
            ("x-csrf-token", &info.csrf),
        ]);
        assert_eq!(auth.authorize(&no_origin, peer()), Err(Denied::Origin));
        auth.sign_out(&good);
        assert_eq!(auth.authorize(&good, peer()), Err(Denied::Unauthenticated));
    }

    #[test]
    fn sessions_are_bounded() {
        let auth = Auth::new(Some(TOKEN.into()));
        for _ in 0..MAX_SESSIONS + 10 {
            auth.sign_in(TOKEN, "x").unwrap();
        }
        assert!(auth.lock().len() <= MAX_SESSIONS);
    }
}
