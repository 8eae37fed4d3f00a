//! Effects: writes to Redis that the host buffers and commits in the same
//! atomic step as the entry's ack. They happen exactly when the entry is
//! acked: never on a failed, trapped or retried attempt, never twice.
//!
//! ```no_run
//! use streamhost_sdk::{effects, handler, HandlerError, Message};
//!
//! #[handler]
//! fn handle(msg: Message) -> Result<(), HandlerError> {
//!     let id = msg.field_str("order_id")?;
//!     effects::emit("events:orders:accepted", [("type", "order.accepted"), ("order_id", id)])?;
//!     let seen = effects::kv::get("orders-seen")?.map_or(0, |v| String::from_utf8_lossy(&v).parse().unwrap_or(0));
//!     effects::kv::set("orders-seen", (seen + 1u64).to_string())?;
//!     Ok(())
//! }
//! # fn main() {}
//! ```

use std::fmt;
use std::time::Duration;

use crate::HandlerError;
#[cfg(target_arch = "wasm32")]
use crate::bindings::streamhost::plugin::effects as wit;
// Natively there is no host: the test harness's recorder (see `testing`).
use crate::bindings::streamhost::plugin::types::Field;
#[cfg(not(target_arch = "wasm32"))]
use crate::native as wit;

/// Why the host refused an effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectError {
    /// The plugin's `[plugin.allow]` config does not permit this stream or channel.
    NotAllowed(String),
    /// The per-invocation effect count or byte budget is used up.
    LimitExceeded(String),
    /// A malformed request (empty name, no fields, ...).
    Invalid(String),
    /// The host could not read state from Redis; retrying the entry may help.
    Unavailable(String),
}

impl fmt::Display for EffectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAllowed(m) => write!(f, "effect not allowed: {m}"),
            Self::LimitExceeded(m) => write!(f, "effect limit exceeded: {m}"),
            Self::Invalid(m) => write!(f, "invalid effect: {m}"),
            Self::Unavailable(m) => write!(f, "state unavailable: {m}"),
        }
    }
}

impl std::error::Error for EffectError {}

impl From<wit::EffectError> for EffectError {
    fn from(e: wit::EffectError) -> Self {
        match e {
            wit::EffectError::NotAllowed(m) => Self::NotAllowed(m),
            wit::EffectError::LimitExceeded(m) => Self::LimitExceeded(m),
            wit::EffectError::Invalid(m) => Self::Invalid(m),
            wit::EffectError::Unavailable(m) => Self::Unavailable(m),
        }
    }
}

/// So `?` works in a handler: an unavailable state read is worth a retry;
/// everything else will fail the same way again, so the entry is rejected.
impl From<EffectError> for HandlerError {
    fn from(e: EffectError) -> Self {
        match e {
            EffectError::Unavailable(_) => HandlerError::retry(e),
            _ => HandlerError::reject(e),
        }
    }
}

fn to_fields<K: Into<String>, V: Into<Vec<u8>>>(
    fields: impl IntoIterator<Item = (K, V)>,
) -> Vec<Field> {
    fields
        .into_iter()
        .map(|(name, value)| Field {
            name: name.into(),
            value: value.into(),
        })
        .collect()
}

/// Appends an entry to `stream` when this entry is acked.
#[track_caller]
pub fn emit<K: Into<String>, V: Into<Vec<u8>>>(
    stream: &str,
    fields: impl IntoIterator<Item = (K, V)>,
) -> Result<(), EffectError> {
    wit::emit(stream, &to_fields(fields), None).map_err(Into::into)
}

/// Like [`emit`], trimming `stream` to about `max_len` entries.
#[track_caller]
pub fn emit_capped<K: Into<String>, V: Into<Vec<u8>>>(
    stream: &str,
    fields: impl IntoIterator<Item = (K, V)>,
    max_len: u64,
) -> Result<(), EffectError> {
    wit::emit(stream, &to_fields(fields), Some(max_len)).map_err(Into::into)
}

/// Publishes `payload` on a Pub/Sub channel when this entry is acked.
#[track_caller]
pub fn publish(channel: &str, payload: impl AsRef<[u8]>) -> Result<(), EffectError> {
    wit::publish(channel, payload.as_ref()).map_err(Into::into)
}

/// Appends an entry to `stream` no sooner than `delay` after this entry is handled.
#[track_caller]
pub fn schedule<K: Into<String>, V: Into<Vec<u8>>>(
    stream: &str,
    fields: impl IntoIterator<Item = (K, V)>,
    delay: Duration,
) -> Result<(), EffectError> {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    wit::schedule(stream, &to_fields(fields), ms).map_err(Into::into)
}

/// Pushes `item` onto the list `key` (`LPUSH`, as producers do, so a list
/// queue hands it out after the items already there) when this message is acked.
pub fn push(key: &str, item: impl AsRef<[u8]>) -> Result<(), EffectError> {
    wit::push(key, item.as_ref()).map_err(Into::into)
}

/// Adds `member` to the sorted set `key` with `score` when this message is
/// acked (a `due`-order queue takes the due time in Unix ms; a NaN score is
/// `Invalid`).
pub fn zadd(key: &str, member: impl AsRef<[u8]>, score: f64) -> Result<(), EffectError> {
    wit::zadd(key, member.as_ref(), score).map_err(Into::into)
}

/// The plugin's own key-value state, namespaced by the host so no other plugin
/// can see it. Reads see this invocation's writes; writes commit with the ack.
pub mod kv {
    use super::{EffectError, wit};

    /// The value of `key`, if set.
    #[track_caller]
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, EffectError> {
        wit::kv_get(key).map_err(Into::into)
    }

    /// Sets `key` to `value`.
    #[track_caller]
    pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), EffectError> {
        wit::kv_set(key, value.as_ref()).map_err(Into::into)
    }

    /// Deletes `key`.
    #[track_caller]
    pub fn delete(key: &str) -> Result<(), EffectError> {
        wit::kv_delete(key).map_err(Into::into)
    }
}
