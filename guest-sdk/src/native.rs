//! Off wasm there is no host to import from: the SDK's effect and log calls
//! land here instead, in the recorder a [`crate::testing::Harness`] installs
//! for the thread while it runs a handler. Same functions and types as the
//! generated `effects` imports, so `effects.rs` only swaps one `use`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

pub use crate::bindings::streamhost::plugin::effects::EffectError;
use crate::bindings::streamhost::plugin::log::Level;
use crate::bindings::streamhost::plugin::types::Field;
use crate::testing::{Effect, Policy};

/// The host's own limits on one entry (host/src/effects.rs).
const MAX_FIELDS: usize = 1_000;
const MAX_KEY: usize = 1_024;

/// What one invocation asked for so far, checked as the host checks it.
pub(crate) struct Recorder {
    pub policy: Policy,
    pub effects: Vec<Effect>,
    pub logs: Vec<(Level, String)>,
    bytes: usize,
    /// The committed state, as it was when the invocation started.
    pub state: BTreeMap<String, Vec<u8>>,
    /// This invocation's own writes, so its reads see them (`None`: deleted).
    pub overlay: HashMap<String, Option<Vec<u8>>>,
}

impl Recorder {
    pub fn new(policy: Policy, state: BTreeMap<String, Vec<u8>>) -> Recorder {
        Recorder {
            policy,
            effects: Vec::new(),
            logs: Vec::new(),
            bytes: 0,
            state,
            overlay: HashMap::new(),
        }
    }

    fn push(&mut self, effect: Effect, bytes: usize) -> Result<(), EffectError> {
        let (max_effects, max_bytes) = (self.policy.max_effects, self.policy.max_effect_bytes);
        if self.effects.len() >= max_effects {
            return Err(EffectError::LimitExceeded(format!(
                "at most {max_effects} effects per invocation (limits.max_effects)"
            )));
        }
        if self.bytes + bytes > max_bytes {
            return Err(EffectError::LimitExceeded(format!(
                "at most {max_bytes} bytes of effects per invocation (limits.max_effect_bytes)"
            )));
        }
        self.bytes += bytes;
        self.effects.push(effect);
        Ok(())
    }
}

thread_local! {
    /// The recorder of the harness running a handler on this thread, if any.
    static CURRENT: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Installs `recorder` for this thread; returns the one it replaces.
pub(crate) fn install(recorder: Option<Recorder>) -> Option<Recorder> {
    CURRENT.with(|c| c.replace(recorder))
}

/// Runs `f` on the installed recorder. Outside a harness an effect has no
/// meaning a test could check, so it panics, at the handler's call (every
/// caller up to the user's code is `#[track_caller]`).
#[track_caller]
fn with<T>(what: &str, f: impl FnOnce(&mut Recorder) -> T) -> T {
    // The panic stays in this function's body: inside a closure it would
    // be reported at the closure, not at the caller.
    match CURRENT.with(|c| c.borrow_mut().as_mut().map(f)) {
        Some(done) => done,
        None => panic!(
            "streamhost_sdk effect `{what}` called natively outside a test harness: \
             there is no host here to record it. In a unit test, run the handler with \
             `streamhost_sdk::testing::Harness::new().invoke(handle, msg)` and check \
             the effects it returns"
        ),
    }
}

/// An entry's fields as the harness records them: `(name, value)` in order.
type Fields = Vec<(String, Vec<u8>)>;

fn fields_of(fields: &[Field]) -> Result<(Fields, usize), EffectError> {
    if fields.is_empty() {
        return Err(EffectError::Invalid(
            "an entry needs at least one field".into(),
        ));
    }
    if fields.len() > MAX_FIELDS {
        return Err(EffectError::Invalid(format!(
            "an entry has at most {MAX_FIELDS} fields, got {}",
            fields.len()
        )));
    }
    // As the host counts them: a fixed cost per field, so empty fields are not free.
    let bytes = fields
        .iter()
        .map(|f| 16 + f.name.len() + f.value.len())
        .sum();
    let owned = fields
        .iter()
        .map(|f| (f.name.clone(), f.value.clone()))
        .collect();
    Ok((owned, bytes))
}

fn check_key(key: &str) -> Result<(), EffectError> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(EffectError::Invalid(
            "state keys are 1 to 1024 bytes".into(),
        ));
    }
    Ok(())
}

#[track_caller]
pub fn emit(stream: &str, fields: &[Field], max_len: Option<u64>) -> Result<(), EffectError> {
    with("emit", |r| {
        r.policy.allowed(Policy::EMIT, stream)?;
        let (fields, bytes) = fields_of(fields)?;
        if max_len.is_some_and(|n| n > i64::MAX as u64) {
            return Err(EffectError::Invalid("max-len is too large".into()));
        }
        let effect = Effect::Emit {
            stream: stream.to_owned(),
            fields,
            max_len,
        };
        r.push(effect, stream.len() + bytes)
    })
}

#[track_caller]
pub fn publish(channel: &str, payload: &[u8]) -> Result<(), EffectError> {
    with("publish", |r| {
        r.policy.allowed(Policy::PUBLISH, channel)?;
        let effect = Effect::Publish {
            channel: channel.to_owned(),
            payload: payload.to_vec(),
        };
        r.push(effect, channel.len() + payload.len())
    })
}

#[track_caller]
pub fn schedule(stream: &str, fields: &[Field], delay_ms: u64) -> Result<(), EffectError> {
    with("schedule", |r| {
        r.policy.allowed(Policy::SCHEDULE, stream)?;
        let (fields, bytes) = fields_of(fields)?;
        let effect = Effect::Schedule {
            stream: stream.to_owned(),
            fields,
            delay_ms,
        };
        r.push(effect, stream.len() + bytes)
    })
}

#[track_caller]
pub fn push(key: &str, item: &[u8]) -> Result<(), EffectError> {
    with("push", |r| {
        r.policy.allowed(Policy::PUSH, key)?;
        let effect = Effect::Push {
            key: key.to_owned(),
            item: item.to_vec(),
        };
        r.push(effect, key.len() + item.len())
    })
}

#[track_caller]
pub fn zadd(key: &str, member: &[u8], score: f64) -> Result<(), EffectError> {
    with("zadd", |r| {
        r.policy.allowed(Policy::ZADD, key)?;
        if score.is_nan() {
            return Err(EffectError::Invalid(
                "a sorted-set score cannot be NaN".into(),
            ));
        }
        let effect = Effect::Zadd {
            key: key.to_owned(),
            member: member.to_vec(),
            score,
        };
        r.push(effect, key.len() + member.len() + 16)
    })
}

#[track_caller]
pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, EffectError> {
    with("kv::get", |r| {
        check_key(key)?;
        Ok(match r.overlay.get(key) {
            Some(value) => value.clone(),
            None => r.state.get(key).cloned(),
        })
    })
}

#[track_caller]
pub fn kv_set(key: &str, value: &[u8]) -> Result<(), EffectError> {
    with("kv::set", |r| {
        check_key(key)?;
        let effect = Effect::KvSet {
            key: key.to_owned(),
            value: value.to_vec(),
        };
        r.push(effect, key.len() + value.len())?;
        r.overlay.insert(key.to_owned(), Some(value.to_vec()));
        Ok(())
    })
}

#[track_caller]
pub fn kv_delete(key: &str) -> Result<(), EffectError> {
    with("kv::delete", |r| {
        check_key(key)?;
        r.push(
            Effect::KvDelete {
                key: key.to_owned(),
            },
            key.len(),
        )?;
        r.overlay.insert(key.to_owned(), None);
        Ok(())
    })
}

/// Records a log line in the running harness; `false` when there is none
/// (the caller prints it instead: logging is harmless outside a test).
pub(crate) fn log(level: Level, message: &str) -> bool {
    CURRENT.with(|c| match c.borrow_mut().as_mut() {
        Some(recorder) => {
            recorder.logs.push((level, message.to_owned()));
            true
        }
        None => false,
    })
}
