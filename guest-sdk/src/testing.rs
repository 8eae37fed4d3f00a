//! Unit-testing handlers natively, with plain `cargo test`: a [`Harness`]
//! stands in for the host, records the effects and log lines a handler asks
//! for, keeps its key-value state in a map, and reports the outcome the host
//! would see. The same shape as `streamhost.testing` (Python) and
//! `@streamhost/sdk/testing` (JS).
//!
//! ```
//! use streamhost_sdk::testing::{Effect, Harness, Outcome, message};
//! use streamhost_sdk::{HandlerError, Message, effects, handler};
//!
//! #[handler]
//! fn handle(msg: Message) -> Result<(), HandlerError> {
//!     let id = msg.field_str("order_id")?;
//!     effects::emit("orders.valid", [("order_id", id)])?;
//!     Ok(())
//! }
//!
//! # fn main() {
//! let mut h = Harness::new().allow_emit(["orders.valid"]);
//! let run = h.invoke(handle, message([("order_id", "7")]));
//! assert_eq!(run.outcome, Outcome::Ok, "{}", run.reason);
//! assert_eq!(run.effects, [Effect::emit("orders.valid", [("order_id", "7")])]);
//!
//! let run = Harness::new().allow_emit(["other"]).invoke(handle, message([("order_id", "7")]));
//! assert_eq!(run.outcome, Outcome::Reject);
//! assert!(run.reason.contains("not allowed"), "{}", run.reason);
//! # }
//! ```
//!
//! Like the host, the effects of an attempt that did not return ok are
//! dropped, a `[plugin.allow]` list set here refuses what it does not match
//! with [`EffectError::NotAllowed`](crate::EffectError) (no list: everything
//! is allowed), and the `[plugin.limits]` effect budgets apply (the host's
//! defaults unless set). A panicking handler is a [`Outcome::Trap`].
//!
//! Only natively: inside a component the host itself records effects. An
//! effect called natively outside [`Harness::invoke`] panics at the call.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::bindings::streamhost::plugin::effects::EffectError;
use crate::bindings::streamhost::plugin::log::Level as WitLevel;
use crate::native::{self, Recorder};
use crate::{HandlerError, Message};

/// A message on stream `test`, id `0-1`, attempt 1, with these fields.
pub fn message<K: Into<String>, V: Into<Vec<u8>>>(
    fields: impl IntoIterator<Item = (K, V)>,
) -> Message {
    fields
        .into_iter()
        .fold(Message::new("test", "0-1"), |msg, (name, value)| {
            msg.with_field(name, value)
        })
}

/// One invocation on a fresh [`Harness`] that allows every effect.
pub fn invoke(
    handler: impl FnOnce(Message) -> Result<(), HandlerError>,
    msg: Message,
) -> Invocation {
    Harness::new().invoke(handler, msg)
}

/// What the host would do with the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acked; the effects are committed.
    Ok,
    /// Delivered again after the plugin's backoff.
    Retry,
    /// Dead-lettered.
    Reject,
    /// The handler panicked: in a component, a trap (retried, then dead-lettered).
    Trap,
}

/// A log line's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl From<WitLevel> for Level {
    fn from(level: WitLevel) -> Self {
        match level {
            WitLevel::Trace => Level::Trace,
            WitLevel::Debug => Level::Debug,
            WitLevel::Info => Level::Info,
            WitLevel::Warn => Level::Warn,
            WitLevel::Error => Level::Error,
        }
    }
}

/// An effect the handler asked for, as the host would commit it with the ack.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // the fields are the effect functions' parameters
pub enum Effect {
    /// [`effects::emit`](crate::effects::emit) (`max_len: None`) or `emit_capped`.
    Emit {
        stream: String,
        fields: Vec<(String, Vec<u8>)>,
        max_len: Option<u64>,
    },
    /// [`effects::publish`](crate::effects::publish).
    Publish { channel: String, payload: Vec<u8> },
    /// [`effects::schedule`](crate::effects::schedule).
    Schedule {
        stream: String,
        fields: Vec<(String, Vec<u8>)>,
        delay_ms: u64,
    },
    /// [`effects::push`](crate::effects::push).
    Push { key: String, item: Vec<u8> },
    /// [`effects::zadd`](crate::effects::zadd).
    Zadd {
        key: String,
        member: Vec<u8>,
        score: f64,
    },
    /// [`effects::kv::set`](crate::effects::kv::set).
    KvSet { key: String, value: Vec<u8> },
    /// [`effects::kv::delete`](crate::effects::kv::delete).
    KvDelete { key: String },
}

fn owned<K: Into<String>, V: Into<Vec<u8>>>(
    fields: impl IntoIterator<Item = (K, V)>,
) -> Vec<(String, Vec<u8>)> {
    fields
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

impl Effect {
    /// An uncapped emit, to compare with: `Effect::emit("s", [("k", "v")])`.
    pub fn emit<K: Into<String>, V: Into<Vec<u8>>>(
        stream: &str,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Effect {
        Effect::Emit {
            stream: stream.to_owned(),
            fields: owned(fields),
            max_len: None,
        }
    }

    /// A publish, to compare with.
    pub fn publish(channel: &str, payload: impl Into<Vec<u8>>) -> Effect {
        Effect::Publish {
            channel: channel.to_owned(),
            payload: payload.into(),
        }
    }

    /// A schedule, to compare with.
    pub fn schedule<K: Into<String>, V: Into<Vec<u8>>>(
        stream: &str,
        fields: impl IntoIterator<Item = (K, V)>,
        delay: Duration,
    ) -> Effect {
        Effect::Schedule {
            stream: stream.to_owned(),
            fields: owned(fields),
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// A push onto a list, to compare with.
    pub fn push(key: &str, item: impl Into<Vec<u8>>) -> Effect {
        Effect::Push {
            key: key.to_owned(),
            item: item.into(),
        }
    }

    /// A zadd to a sorted set, to compare with.
    pub fn zadd(key: &str, member: impl Into<Vec<u8>>, score: f64) -> Effect {
        Effect::Zadd {
            key: key.to_owned(),
            member: member.into(),
            score,
        }
    }

    /// A state write, to compare with.
    pub fn kv_set(key: &str, value: impl Into<Vec<u8>>) -> Effect {
        Effect::KvSet {
            key: key.to_owned(),
            value: value.into(),
        }
    }

    /// A state delete, to compare with.
    pub fn kv_delete(key: &str) -> Effect {
        Effect::KvDelete {
            key: key.to_owned(),
        }
    }
}

/// What one invocation came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// What the host would do with the entry.
    pub outcome: Outcome,
    /// The reason given to retry/reject, or the panic message of a trap.
    pub reason: String,
    /// The effects the host would commit with the ack, in order (empty unless ok).
    pub effects: Vec<Effect>,
    /// The lines the handler logged, whatever the outcome.
    pub logs: Vec<(Level, String)>,
}

/// The `[plugin.allow]` lists and `[plugin.limits]` effect budgets a harness applies.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// Glob lists for emit, publish, schedule, push and zadd (`None`:
    /// everything allowed).
    allow: [Option<Vec<String>>; 5],
    pub max_effects: usize,
    pub max_effect_bytes: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow: [None, None, None, None, None],
            // The host's defaults (`limits.max_effects`, `limits.max_effect_bytes`).
            max_effects: 1_000,
            max_effect_bytes: 1 << 20,
        }
    }
}

impl Policy {
    pub const EMIT: usize = 0;
    pub const PUBLISH: usize = 1;
    pub const SCHEDULE: usize = 2;
    pub const PUSH: usize = 3;
    pub const ZADD: usize = 4;

    /// Refuses an empty name, or one no pattern of the list matches, with the host's errors.
    pub fn allowed(&self, which: usize, name: &str) -> Result<(), EffectError> {
        let what = ["emit to", "publish on", "schedule to", "push to", "zadd to"][which];
        if name.is_empty() {
            return Err(EffectError::Invalid(format!("empty {what} name")));
        }
        match &self.allow[which] {
            Some(patterns) if !patterns.iter().any(|p| glob(p, name)) => Err(
                EffectError::NotAllowed(format!("may not {what} {name:?} (see [plugin.allow])")),
            ),
            _ => Ok(()),
        }
    }
}

/// `*`, `?`, `[abc]`, `[a-z]` and `[!abc]`, as `[plugin.allow]` patterns
/// have them; a `[` without its `]` is literal.
fn glob(pattern: &str, name: &str) -> bool {
    fn class(set: &[char], c: char) -> bool {
        let (negated, set) = match set.split_first() {
            Some(('!', rest)) => (true, rest),
            _ => (false, set),
        };
        let mut hit = false;
        let mut i = 0;
        while i < set.len() {
            if i + 2 < set.len() && set[i + 1] == '-' {
                hit |= (set[i]..=set[i + 2]).contains(&c);
                i += 3;
            } else {
                hit |= set[i] == c;
                i += 1;
            }
        }
        hit != negated
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|skip| go(rest, &n[skip..])),
            Some(('?', rest)) => !n.is_empty() && go(rest, &n[1..]),
            // `[]` and `[!]` take the `]` as a member, as the glob crate does.
            Some(('[', rest)) => match rest.iter().skip(1).position(|&c| c == ']') {
                Some(end) if !n.is_empty() => {
                    let end = end + 1;
                    class(&rest[..end], n[0]) && go(&rest[end + 1..], &n[1..])
                }
                Some(_) => false,
                None => n.first() == Some(&'[') && go(rest, &n[1..]),
            },
            Some((&c, rest)) => n.first() == Some(&c) && go(rest, &n[1..]),
        }
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    go(&p, &n)
}

/// A native stand-in for the host (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct Harness {
    policy: Policy,
    /// The plugin's key-value state; an ok invocation's writes are applied to it.
    pub state: BTreeMap<String, Vec<u8>>,
}

fn patterns<P: Into<String>>(list: impl IntoIterator<Item = P>) -> Option<Vec<String>> {
    Some(list.into_iter().map(Into::into).collect())
}

impl Harness {
    /// A harness allowing every effect, with the host's default effect budgets and no state.
    pub fn new() -> Harness {
        Harness::default()
    }

    /// Streams `emit` may write to, as `[plugin.allow] emit` (globs).
    pub fn allow_emit<P: Into<String>>(mut self, list: impl IntoIterator<Item = P>) -> Harness {
        self.policy.allow[Policy::EMIT] = patterns(list);
        self
    }

    /// Channels `publish` may use, as `[plugin.allow] publish`.
    pub fn allow_publish<P: Into<String>>(mut self, list: impl IntoIterator<Item = P>) -> Harness {
        self.policy.allow[Policy::PUBLISH] = patterns(list);
        self
    }

    /// Streams `schedule` may write to, as `[plugin.allow] schedule`.
    pub fn allow_schedule<P: Into<String>>(mut self, list: impl IntoIterator<Item = P>) -> Harness {
        self.policy.allow[Policy::SCHEDULE] = patterns(list);
        self
    }

    /// Lists `push` may push onto, as `[plugin.allow] push`.
    pub fn allow_push<P: Into<String>>(mut self, list: impl IntoIterator<Item = P>) -> Harness {
        self.policy.allow[Policy::PUSH] = patterns(list);
        self
    }

    /// Sorted sets `zadd` may add to, as `[plugin.allow] zadd`.
    pub fn allow_zadd<P: Into<String>>(mut self, list: impl IntoIterator<Item = P>) -> Harness {
        self.policy.allow[Policy::ZADD] = patterns(list);
        self
    }

    /// Effects one invocation may ask for, as `limits.max_effects`.
    pub fn max_effects(mut self, n: usize) -> Harness {
        self.policy.max_effects = n;
        self
    }

    /// Bytes of effects one invocation may buffer, as `limits.max_effect_bytes`.
    pub fn max_effect_bytes(mut self, n: usize) -> Harness {
        self.policy.max_effect_bytes = n;
        self
    }

    /// Presets state key `key` (as if an earlier invocation had set it).
    pub fn with_state(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Harness {
        self.state.insert(key.into(), value.into());
        self
    }

    /// Calls `handler(msg)` as the host would: records its effects and logs,
    /// and on ok applies its state writes to [`Harness::state`].
    pub fn invoke(
        &mut self,
        handler: impl FnOnce(Message) -> Result<(), HandlerError>,
        msg: Message,
    ) -> Invocation {
        let recorder = Recorder::new(self.policy.clone(), self.state.clone());
        let previous = native::install(Some(recorder));
        let returned = catch_unwind(AssertUnwindSafe(|| handler(msg)));
        let Some(recorder) = native::install(previous) else {
            unreachable!("the recorder installed above is still there")
        };
        let (outcome, reason) = match returned {
            Ok(Ok(())) => (Outcome::Ok, String::new()),
            Ok(Err(HandlerError::Retry(reason))) => (Outcome::Retry, reason),
            Ok(Err(HandlerError::Reject(reason))) => (Outcome::Reject, reason),
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "the handler panicked".to_owned());
                (Outcome::Trap, reason)
            }
        };
        let logs = recorder
            .logs
            .into_iter()
            .map(|(level, line)| (level.into(), line))
            .collect();
        if outcome != Outcome::Ok {
            return Invocation {
                outcome,
                reason,
                effects: Vec::new(),
                logs,
            };
        }
        for (key, value) in recorder.overlay {
            match value {
                Some(value) => self.state.insert(key, value),
                None => self.state.remove(&key),
            };
        }
        Invocation {
            outcome,
            reason,
            effects: recorder.effects,
            logs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effects::{self, kv};

    fn counter(msg: Message) -> Result<(), HandlerError> {
        let seen = kv::get("seen")?.map_or(0, |v| v.len());
        kv::set("seen", vec![b'x'; seen + 1])?;
        if msg.field("fail").is_some() {
            return Err(HandlerError::retry("asked to fail"));
        }
        crate::info!("seen {}", seen + 1);
        effects::emit_capped("out", [("n", (seen + 1).to_string())], 10)?;
        effects::publish("news", b"\xff\x00")?;
        effects::schedule("later", [("k", "v")], Duration::from_secs(2))?;
        kv::delete("gone")?;
        Ok(())
    }

    #[test]
    fn records_effects_logs_and_commits_state_only_on_ok() {
        let mut h = Harness::new().with_state("gone", "1");
        let run = h.invoke(counter, message([("a", "b")]));
        assert_eq!(run.outcome, Outcome::Ok, "{}", run.reason);
        assert_eq!(
            run.effects,
            [
                Effect::kv_set("seen", "x"),
                Effect::Emit {
                    stream: "out".into(),
                    fields: vec![("n".into(), b"1".to_vec())],
                    max_len: Some(10)
                },
                Effect::publish("news", b"\xff\x00".to_vec()),
                Effect::schedule("later", [("k", "v")], Duration::from_secs(2)),
                Effect::kv_delete("gone"),
            ]
        );
        assert_eq!(run.logs, [(Level::Info, "seen 1".to_owned())]);
        assert_eq!(h.state, BTreeMap::from([("seen".into(), b"x".to_vec())]));

        // A retried attempt: nothing committed, state unchanged, logs kept.
        let run = h.invoke(counter, message([("fail", "1")]));
        assert_eq!(
            (run.outcome, run.reason.as_str()),
            (Outcome::Retry, "asked to fail")
        );
        assert!(run.effects.is_empty());
        assert_eq!(h.state["seen"], b"x");

        assert_eq!(
            h.invoke(counter, message([("a", "b")])).outcome,
            Outcome::Ok
        );
        assert_eq!(h.state["seen"], b"xx");
    }

    #[test]
    fn push_and_zadd_are_recorded_and_checked_like_the_host() {
        let queue = |msg: Message| -> Result<(), HandlerError> {
            effects::push(msg.field_str("list")?, b"\x00job")?;
            effects::zadd(
                "jobs:later",
                b"job",
                msg.field_str("score")?.parse().unwrap_or(f64::NAN),
            )?;
            Ok(())
        };
        let mut h = Harness::new()
            .allow_push(["jobs:*"])
            .allow_zadd(["jobs:later"]);
        let run = h.invoke(queue, message([("list", "jobs:email"), ("score", "1.5")]));
        assert_eq!(run.outcome, Outcome::Ok, "{}", run.reason);
        assert_eq!(
            run.effects,
            [
                Effect::push("jobs:email", b"\x00job".to_vec()),
                Effect::zadd("jobs:later", "job", 1.5)
            ]
        );
        let run = h.invoke(queue, message([("list", "other"), ("score", "1")]));
        assert!(run.reason.contains("may not push to"), "{}", run.reason);
        let run = h.invoke(queue, message([("list", "jobs:x"), ("score", "nan")]));
        assert_eq!(
            run.reason,
            "invalid effect: a sorted-set score cannot be NaN"
        );
        assert!(run.effects.is_empty());
    }

    #[test]
    fn allow_lists_and_limits_refuse_like_the_host() {
        let emit = |msg: Message| -> Result<(), HandlerError> {
            let to = msg.field_str("to")?;
            effects::emit(to, [("k", "v")])?;
            effects::emit(to, [("k", "v")])?;
            Ok(())
        };
        let mut h = Harness::new().allow_emit(["orders.*", "audit-[0-9]"]);
        for ok in ["orders.valid", "audit-7"] {
            assert_eq!(
                h.invoke(emit, message([("to", ok)])).outcome,
                Outcome::Ok,
                "{ok}"
            );
        }
        for refused in ["payments", "audit-x", "orders"] {
            let run = h.invoke(emit, message([("to", refused)]));
            assert_eq!(run.outcome, Outcome::Reject, "{refused}");
            assert!(
                run.reason
                    .starts_with("effect not allowed: may not emit to"),
                "{}",
                run.reason
            );
        }
        let run = h.invoke(emit, message([("to", "")]));
        assert_eq!(run.reason, "invalid effect: empty emit to name");

        let run = Harness::new()
            .max_effects(1)
            .invoke(emit, message([("to", "x")]));
        assert_eq!(run.outcome, Outcome::Reject);
        assert!(run.reason.contains("limits.max_effects"), "{}", run.reason);
        let run = Harness::new()
            .max_effect_bytes(30)
            .invoke(emit, message([("to", "x")]));
        assert!(
            run.reason.contains("limits.max_effect_bytes"),
            "{}",
            run.reason
        );

        let no_fields =
            |_: Message| effects::emit("x", Vec::<(String, Vec<u8>)>::new()).map_err(Into::into);
        let run = invoke(no_fields, message([("a", "b")]));
        assert_eq!(
            run.reason,
            "invalid effect: an entry needs at least one field"
        );
    }

    #[test]
    fn a_panic_is_a_trap_and_the_harness_is_left_clean() {
        let run = invoke(|_| panic!("boom {}", 1), message([("a", "b")]));
        assert_eq!(
            (run.outcome, run.reason.as_str()),
            (Outcome::Trap, "boom 1")
        );
        // The recorder is gone again: an effect outside the harness panics.
        let outside = catch_unwind(|| effects::publish("c", b""));
        assert!(outside.is_err());
    }

    #[test]
    fn globs_match_as_allow_lists_do() {
        for (p, n, hit) in [
            ("a*", "a", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[ab]x", "bx", true),
            ("[!ab]x", "bx", false),
            ("[!ab]x", "cx", true),
            ("[a-c]", "b", true),
            ("[a-c]", "d", false),
            ("a[", "a[", true),
            ("é*", "été", true),
        ] {
            assert_eq!(glob(p, n), hit, "{p} ~ {n}");
        }
    }
}
