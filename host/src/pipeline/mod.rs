//! The source-agnostic pipeline every entry goes through, whatever it was
//! read from:
//!
//! ```text
//! source ──► intake ──► worker ──► settle ──► source action
//! ```
//!
//! - a **source** ([`source::Source`]) finds deliveries (reads, claims,
//!   retries) and hands them to [`intake::Intake::submit`];
//! - **intake** keeps one copy per entry in flight ([`inflight`]), bounds the
//!   bytes read ahead, applies the attempt limit, and splits work across workers;
//! - a **worker** ([`worker`]) owns one plugin instance and only invokes the handler;
//! - **settle** ([`settle`]) is the one place that turns what happened
//!   (outcome, effect-commit state, attempt, policy) into what happens next
//!   ([`settle::Verdict`]) and records the metric and the log line for it;
//! - the **source** then carries the verdict out with its own Redis commands.
//!
//! # Plugging in a new source
//! Implement [`source::Source`] (ack, commit effects with the ack, retry after
//! a delay, dead-letter, let go), run the tasks that find deliveries, and pass
//! each batch to [`intake::Intake::submit`] as [`Delivery`] values whose `key`
//! names the Redis key they came from and whose delivery count comes from
//! Redis. Nothing in this module needs to change.

pub(crate) mod accounting;
pub(crate) mod breaker;
pub(crate) mod canary;
pub(crate) mod context;
pub(crate) mod cpu_share;
pub(crate) mod delivery;
pub(crate) mod inflight;
pub(crate) mod intake;
pub(crate) mod ordering;
pub(crate) mod settle;
pub(crate) mod shadow;
pub(crate) mod source;
pub(crate) mod tally;
pub(crate) mod waiting;
pub(crate) mod worker;

pub use context::PluginContext;
pub(crate) use cpu_share::{CpuShares, charged};
pub(crate) use delivery::{Batch, Delivery, Origin, Receipt, Uncounted};
