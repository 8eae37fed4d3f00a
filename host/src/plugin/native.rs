//! Native handlers and invocation taps: a plugin whose code is a Rust function
//! instead of a component, run through the very same pipeline (the benchmark's
//! "native baseline": what the host costs without Wasm), and a hook that sees
//! every invocation as it returns (the benchmark's latency probe).

use std::sync::Arc;

use super::bindings::{HandlerError, Message, v0_1, v0_2};
use super::state::HostState;
use crate::outcome::Outcome;

/// A handler compiled into the host: the `handle` contract without the
/// sandbox, so no fuel, memory or time limit applies to it.
pub type NativeHandler = fn(&Message) -> Result<(), HandlerError>;

/// Called with every message and its outcome right after the handler returns.
pub type InvocationTap = Arc<dyn Fn(&Message, &Outcome) + Send + Sync>;

/// What runs when a plugin handles an entry.
#[derive(Clone)]
pub(crate) enum Code {
    /// A pre-linked component.
    Wasm(Pre),
    /// A Rust function.
    Native(NativeHandler),
}

/// A pre-linked component, by the WIT package it was built against.
#[derive(Clone)]
pub(crate) enum Pre {
    /// `streamhost:plugin@0.2.0`.
    Current(v0_2::HandlerPre<HostState>),
    /// `streamhost:plugin@0.1.0`.
    V0_1(v0_1::HandlerPre<HostState>),
}

impl Pre {
    /// The engine the component was compiled with (it carries the metering).
    pub(crate) fn engine(&self) -> &wasmtime::Engine {
        match self {
            Pre::Current(pre) => pre.engine(),
            Pre::V0_1(pre) => pre.engine(),
        }
    }
}
