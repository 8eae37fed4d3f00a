//! Native handlers and invocation taps: a plugin whose code is a Rust function
//! instead of a component, run through the very same pipeline (the benchmark's
//! "native baseline": what the host costs without Wasm), and a hook that sees
//! every invocation as it returns (the benchmark's latency probe).

use std::sync::Arc;

use super::bindings::{HandlerError, HandlerPre, Message};
use super::engine::WasmEngine;
use super::registry::LoadedPlugin;
use super::state::HostState;
use crate::config::LimitsConfig;
use crate::effects::EffectPolicy;
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
    Wasm(HandlerPre<HostState>),
    /// A Rust function.
    Native(NativeHandler),
}

impl LoadedPlugin {
    /// A plugin backed by a native function. Its instances still get a store
    /// (so effects and accounting work as for components) from `engine`.
    pub fn native(engine: &Arc<WasmEngine>, name: &str, handler: NativeHandler) -> LoadedPlugin {
        LoadedPlugin {
            name: name.into(),
            digest: format!("native:{name}").into(),
            limits: LimitsConfig::default(),
            effects: Arc::new(EffectPolicy::deny_all(name)),
            code: Code::Native(handler),
            engine: engine.clone(),
            tap: None,
        }
    }

    /// Calls `tap` after every invocation of this plugin's instances.
    pub fn with_tap(mut self, tap: InvocationTap) -> LoadedPlugin {
        self.tap = Some(tap);
        self
    }
}
