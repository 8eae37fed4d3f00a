//! One live instance of a plugin and the invocation of its `handle` export
//! under the plugin's limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::bindings::{Handler, Message};
use super::native::{Code, InvocationTap, NativeHandler};
use super::registry::LoadedPlugin;
use super::state::HostState;
use crate::error::LoadError;
use crate::outcome::{Outcome, TrapSignals, classify};

/// Bytes a guest may pass to the host in one host call (bounds log lines and,
/// later, effect payloads).
const HOSTCALL_FUEL: usize = 1 << 20;

/// Extra wall-clock time before the host's own timer abandons a call that is
/// blocked in a host function, where epoch interruption cannot reach.
const TIMER_GRACE: Duration = Duration::from_millis(50);

/// The result of one invocation.
#[derive(Debug)]
pub struct Invocation {
    /// What the handler came to, classified.
    pub outcome: Outcome,
    /// Fuel the invocation consumed.
    pub fuel: u64,
    /// Wall-clock time in the guest.
    pub elapsed: Duration,
}

/// An instance that trapped was called again: a caller bug. The caller
/// discards the instance; no outcome is made up for the entry.
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin:?}: a trapped instance was called again")]
pub struct Poisoned {
    plugin: String,
}

/// A store plus an instantiated handler. Never used again after a trap.
pub struct PluginInstance {
    store: Store<HostState>,
    guest: Guest,
    tap: Option<InvocationTap>,
    poisoned: bool,
    /// The version this instance runs (`sha256:<hex>` of its component).
    digest: Arc<str>,
}

/// The code an instance runs.
enum Guest {
    Wasm(Handler),
    Native(NativeHandler),
}

impl LoadedPlugin {
    /// A fresh instance with the plugin's limits applied.
    pub async fn instantiate(&self) -> Result<PluginInstance, LoadError> {
        let mut store = Store::new(
            self.engine.engine(),
            HostState::new(self.name.clone(), &self.limits, self.effects.clone()),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(HOSTCALL_FUEL);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= state.deadline {
                state.timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Yield so a long-running guest shares its thread with other
                // tasks. Tokio's `yield_now` (unlike a plain self-wake) lets
                // the runtime poll its I/O driver before the guest runs again:
                // without it, guests that spin on every worker thread delay
                // every other plugin's Redis replies by tens of milliseconds.
                Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(tokio::task::yield_now()),
                ))
            }
        });
        // Instantiation runs guest code (start functions): bound it like a call.
        let instantiate_err = |detail: String| LoadError::Instantiate {
            plugin: self.name.to_string(),
            detail,
        };
        store
            .set_fuel(self.limits.fuel)
            .map_err(|e| instantiate_err(format!("{e:#}")))?;
        store.data_mut().deadline = Instant::now() + self.limits.timeout();
        store.set_epoch_deadline(1);
        let guest = match &self.code {
            Code::Wasm(pre) => Guest::Wasm(
                tokio::time::timeout(
                    self.limits.timeout() + TIMER_GRACE,
                    pre.instantiate_async(&mut store),
                )
                .await
                .map_err(|_| {
                    instantiate_err(format!(
                        "timed out after {} ms (limits.timeout_ms)",
                        self.limits.timeout_ms
                    ))
                })?
                .map_err(|e| {
                    instantiate_err(super::limits::name_the_key(crate::outcome::trap_message(
                        &e,
                    )))
                })?,
            ),
            Code::Native(handler) => Guest::Native(*handler),
        };
        Ok(PluginInstance {
            store,
            guest,
            tap: self.tap.clone(),
            poisoned: false,
            digest: self.digest.clone(),
        })
    }
}

impl PluginInstance {
    /// Gives the instance a connection for state reads (`kv-get`).
    pub fn attach_redis(&mut self, conn: crate::connection::Conn) {
        self.store.data_mut().redis = Some(conn);
    }

    /// The effects the last invocation buffered (empty after a failure).
    pub fn effects(&self) -> &crate::effects::EffectBuffer {
        &self.store.data().effects
    }

    /// The version this instance runs.
    pub fn digest(&self) -> &Arc<str> {
        &self.digest
    }

    /// The store's state, for the invoker (logs, in-memory state, memory used).
    pub(crate) fn state_mut(&mut self) -> &mut HostState {
        self.store.data_mut()
    }

    /// Whether a trap made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Calls `handle` once under fuel, time, memory and log budgets. Refuses
    /// an instance a trap left undefined.
    pub async fn invoke(
        &mut self,
        msg: &Message,
        limits: &crate::config::LimitsConfig,
    ) -> Result<Invocation, Poisoned> {
        let started = Instant::now();
        if self.poisoned {
            return Err(Poisoned {
                plugin: self.store.data().plugin.to_string(),
            });
        }
        {
            let state = self.store.data_mut();
            state.deadline = started + limits.timeout();
            state.timed_out = false;
            state.limiter.refused = false;
            state.log_budget = limits.log_bytes;
            state.log_dropped = 0;
            state.log_dropped_lines = 0;
            // Output of instantiation (or of a host bug) is not this entry's.
            let _ = (state.stdout.take(), state.stderr.take());
            state.entry_id.clone_from(&msg.id);
            state.effects.clear();
        }
        // Cannot fail: fuel is enabled on every store of this engine.
        let _ = self.store.set_fuel(limits.fuel);
        self.store.set_epoch_deadline(1);
        let result = match &self.guest {
            Guest::Wasm(handler) => {
                let call = handler.call_handle(&mut self.store, msg);
                match tokio::time::timeout(limits.timeout() + TIMER_GRACE, call).await {
                    Ok(result) => result,
                    Err(_) => {
                        self.store.data_mut().timed_out = true;
                        Err(wasmtime::Error::msg(
                            "wall-clock limit reached while blocked in a host call",
                        ))
                    }
                }
            }
            Guest::Native(handler) => Ok(handler(msg)),
        };
        let elapsed = started.elapsed();
        self.store.data_mut().flush_output();
        let fuel = limits
            .fuel
            .saturating_sub(self.store.get_fuel().unwrap_or(0));
        let state = self.store.data();
        let signals = TrapSignals {
            timed_out: state.timed_out,
            memory_refused: state.limiter.refused,
        };
        let (log_dropped, log_dropped_lines) = (state.log_dropped, state.log_dropped_lines);
        let outcome = classify(result, signals);
        if let Some(tap) = &self.tap {
            tap(msg, &outcome);
        }
        if matches!(outcome, Outcome::Trap(..)) {
            self.poisoned = true;
        }
        if log_dropped > 0 || log_dropped_lines > 0 {
            tracing::warn!(plugin = %state.plugin, id = %msg.id, log_dropped, log_dropped_lines, log_bytes = limits.log_bytes, "plugin exceeded its log budget (limits.log_bytes); the rest of this invocation's output was dropped");
        }
        if outcome != Outcome::Ok {
            // Effects of a failed attempt never happen.
            self.store.data_mut().effects.clear();
        }
        self.store.data_mut().entry_id.clear();
        Ok(Invocation {
            outcome,
            fuel,
            elapsed,
        })
    }
}
