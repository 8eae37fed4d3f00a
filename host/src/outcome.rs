//! The vocabulary of what happened to an entry: a handler invocation
//! classified into an [`Outcome`] (exactly once, here), trap kinds, and the
//! reasons an entry is dead-lettered. What happens *next* is decided in
//! [`crate::pipeline::settle`].

use crate::plugin::bindings::HandlerError;
use std::fmt;

/// Why an invocation trapped. The names appear in logs, DLQ metadata and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// The per-invocation fuel budget ran out.
    Fuel,
    /// The wall-clock budget ran out.
    Timeout,
    /// The guest tried to grow memory or tables past its limit.
    Memory,
    /// Unbounded recursion hit the wasm stack limit.
    StackOverflow,
    /// A panic, `unreachable`, or any other trap.
    Panic,
}

impl TrapKind {
    /// Every kind, in a fixed order.
    pub const ALL: [TrapKind; 5] = [
        TrapKind::Fuel,
        TrapKind::Timeout,
        TrapKind::Memory,
        TrapKind::StackOverflow,
        TrapKind::Panic,
    ];

    /// Stable label for metrics and DLQ metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::Fuel => "fuel",
            TrapKind::Timeout => "timeout",
            TrapKind::Memory => "memory",
            TrapKind::StackOverflow => "stack-overflow",
            TrapKind::Panic => "trap",
        }
    }
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrapKind::Fuel => "fuel exhausted",
            TrapKind::Timeout => "timeout",
            TrapKind::Memory => "memory limit",
            TrapKind::StackOverflow => "stack overflow",
            TrapKind::Panic => "panic/trap",
        })
    }
}

/// What one invocation of `handle` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler accepted the entry.
    Ok,
    /// The handler asked for another attempt.
    Retry(String),
    /// The handler refused the entry for good.
    Reject(String),
    /// The invocation trapped; the instance must not be used again.
    Trap(TrapKind, String),
}

/// What the host observed besides the return value, needed to classify traps.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TrapSignals {
    /// The epoch callback or the host's timer ended the call for its deadline.
    pub timed_out: bool,
    /// The resource limiter refused a memory or table grow.
    pub memory_refused: bool,
}

/// Classifies a finished invocation. The one place a handler's result is interpreted.
pub(crate) fn classify(
    result: wasmtime::Result<Result<(), HandlerError>>,
    signals: TrapSignals,
) -> Outcome {
    let err = match result {
        Ok(Ok(())) => return Outcome::Ok,
        Ok(Err(HandlerError::Retry(reason))) => return Outcome::Retry(bounded(&reason)),
        Ok(Err(HandlerError::Reject(reason))) => return Outcome::Reject(bounded(&reason)),
        Err(err) => err,
    };
    let trap = err.downcast_ref::<wasmtime::Trap>().copied();
    let kind = if signals.timed_out || trap == Some(wasmtime::Trap::Interrupt) {
        TrapKind::Timeout
    } else if trap == Some(wasmtime::Trap::OutOfFuel) {
        TrapKind::Fuel
    } else if trap == Some(wasmtime::Trap::StackOverflow) {
        TrapKind::StackOverflow
    } else if signals.memory_refused {
        TrapKind::Memory
    } else {
        TrapKind::Panic
    };
    Outcome::Trap(kind, bounded(trap_message(&err).trim()))
}

/// Longest text kept from a handler (reasons, trap messages). The guest
/// controls it, and it lands in logs and in DLQ metadata.
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// The trap itself, without the wasm backtrace wasmtime attaches as outer
/// context (whose frame names the guest chose, and which spans many lines).
pub(crate) fn trap_message(err: &wasmtime::Error) -> String {
    let causes: Vec<String> = err
        .chain()
        .map(ToString::to_string)
        .filter(|c| !c.starts_with("error while executing at wasm backtrace"))
        .collect();
    if causes.is_empty() {
        format!("{err:#}")
    } else {
        causes.join(": ")
    }
}

/// `text` made safe for one log line and one metadata field: control
/// characters (newlines, terminal escapes) replaced, length capped.
pub(crate) fn bounded(text: &str) -> String {
    let clean = crate::plugin::state::sanitize(text);
    if clean.len() <= MAX_REASON_BYTES {
        return clean.into_owned();
    }
    let mut end = MAX_REASON_BYTES;
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &clean[..end], clean.len())
}

/// Why an entry went to the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeadReason {
    /// The handler returned `reject`.
    Rejected,
    /// `max_attempts` deliveries failed.
    AttemptsExhausted,
    /// A trap with `on_trap = "dead-letter"`.
    Trapped(TrapKind),
    /// No instance could be made for `max_attempts` attempts (the pool
    /// exhausted, or instantiation trapped or timed out).
    Instantiate,
    /// Redis delivered the entry far more often than handler attempts were
    /// made (lost read replies, hosts that died before a handler ran): the
    /// safety net that keeps such an entry from circulating forever.
    DeliveredTooOften,
    /// The entry cannot be handed to the handler as it is: a field name is
    /// not UTF-8, which WIT 0.1 `string` names cannot carry. The handler was
    /// not invoked; the entry is kept byte for byte.
    FieldNameNotUtf8,
}

impl DeadReason {
    /// Stable label stored in DLQ metadata (`dlq.reason`) and used by `dlq replay --reason`.
    pub(crate) fn label(&self) -> String {
        match self {
            DeadReason::Rejected => "rejected".to_owned(),
            DeadReason::AttemptsExhausted => "attempts-exhausted".to_owned(),
            DeadReason::Trapped(kind) => format!("trap:{}", kind.as_str()),
            DeadReason::Instantiate => "instantiate".to_owned(),
            DeadReason::DeliveredTooOften => "delivered-too-often".to_owned(),
            DeadReason::FieldNameNotUtf8 => "undeliverable:field-name-not-utf8".to_owned(),
        }
    }
}

/// Why an entry did not succeed, as `entries_failed{kind}` labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The handler asked for a retry.
    Retry,
    /// The handler rejected the entry.
    Rejected,
    /// The invocation trapped.
    Trap(TrapKind),
    /// No instance could be made.
    Instantiate,
    /// Redis refused the effects' commit for good (a key of the wrong type).
    Commit,
    /// Delivered more often than allowed, the last deliveries without an
    /// outcome (a host died or stopped while handling it).
    NoOutcome,
    /// The entry cannot be handed to the handler as it is (a field name that
    /// is not UTF-8); no handler ran.
    Undeliverable,
}

impl FailureKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Retry => "retry",
            FailureKind::Rejected => "rejected",
            FailureKind::Trap(kind) => kind.as_str(),
            FailureKind::Instantiate => "instantiate",
            FailureKind::Commit => "commit",
            FailureKind::NoOutcome => "no-outcome",
            FailureKind::Undeliverable => "undeliverable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_text_is_one_bounded_line() {
        let long = format!("a\x1b[2Jb\n{}", "x".repeat(5000));
        let Outcome::Reject(reason) =
            classify(Ok(Err(HandlerError::Reject(long))), TrapSignals::default())
        else {
            panic!("not a reject");
        };
        assert!(reason.starts_with("a\u{FFFD}[2Jb\u{FFFD}xxx"), "{reason}");
        assert!(reason.len() < MAX_REASON_BYTES + 40, "{}", reason.len());
        assert!(reason.ends_with("bytes in all)"), "{reason}");
        assert_eq!(bounded("fine"), "fine");
    }

    #[test]
    fn trap_text_drops_the_backtrace_context() {
        let err = wasmtime::Error::msg("wasm trap: wasm `unreachable` instruction executed")
            .context("error while executing at wasm backtrace:\n    0: 0x1 - \x1b[31mevil");
        let Outcome::Trap(kind, text) = classify(Err(err), TrapSignals::default()) else {
            panic!("not a trap");
        };
        assert_eq!(kind, TrapKind::Panic);
        assert_eq!(text, "wasm trap: wasm `unreachable` instruction executed");
    }
}
