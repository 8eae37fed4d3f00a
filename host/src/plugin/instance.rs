//! One live instance of a plugin and the invocation of its `handle` export
//! under the plugin's limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::bindings::{Message, v0_1, v0_2};
use super::native::{Code, InvocationTap, NativeHandler, Pre};
use super::registry::LoadedPlugin;
use super::state::HostState;
use crate::config::Metering;
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
    /// When the call returned (read once here, so callers that pace
    /// themselves by it need no clock read of their own).
    pub ended: Instant,
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
    /// Whether its engine counts fuel (`limits.metering = "fuel"`).
    metered: bool,
    /// The version this instance runs (`sha256:<hex>` of its component).
    digest: Arc<str>,
}

/// The code an instance runs.
enum Guest {
    Wasm(v0_2::Handler),
    /// A component built against `streamhost:plugin@0.1.0`.
    WasmV0_1(v0_1::Handler),
    Native(NativeHandler),
}

impl LoadedPlugin {
    /// A fresh instance with the plugin's limits applied.
    pub async fn instantiate(&self) -> Result<PluginInstance, LoadError> {
        let engine = match &self.code {
            // The engine the component was compiled with (its metering).
            Code::Wasm(pre) => pre.engine(),
            Code::Native(_) => self.engine.engine(),
        };
        let mut store = Store::new(
            engine,
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
        let metered = self.limits.metering == Metering::Fuel;
        if metered {
            store
                .set_fuel(self.limits.fuel)
                .map_err(|e| instantiate_err(format!("{e:#}")))?;
        }
        store.data_mut().deadline = Instant::now() + self.limits.timeout();
        store.set_epoch_deadline(1);
        let guest = match &self.code {
            Code::Wasm(pre) => {
                let timeout = |_| {
                    instantiate_err(format!(
                        "timed out after {} ms (limits.timeout_ms)",
                        self.limits.timeout_ms
                    ))
                };
                let trapped = |e: wasmtime::Error| {
                    instantiate_err(super::limits::name_the_key(crate::outcome::trap_message(
                        &e,
                    )))
                };
                let bound = self.limits.timeout() + TIMER_GRACE;
                match pre {
                    Pre::Current(pre) => Guest::Wasm(
                        tokio::time::timeout(bound, pre.instantiate_async(&mut store))
                            .await
                            .map_err(timeout)?
                            .map_err(trapped)?,
                    ),
                    Pre::V0_1(pre) => Guest::WasmV0_1(
                        tokio::time::timeout(bound, pre.instantiate_async(&mut store))
                            .await
                            .map_err(timeout)?
                            .map_err(trapped)?,
                    ),
                }
            }
            Code::Native(handler) => Guest::Native(*handler),
        };
        Ok(PluginInstance {
            store,
            guest,
            tap: self.tap.clone(),
            poisoned: false,
            metered,
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

    /// Bytes its memories and tables hold now (they never shrink).
    pub fn memory_used(&self) -> usize {
        self.store.data().limiter.used()
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
        let metered = self.metered;
        if metered {
            // Cannot fail: fuel is enabled on this store's engine.
            let _ = self.store.set_fuel(limits.fuel);
        }
        self.store.set_epoch_deadline(1);
        let result = match &self.guest {
            Guest::Wasm(handler) => {
                let call = handler.call_handle(&mut self.store, msg);
                bounded(started, limits, call).await
            }
            Guest::WasmV0_1(handler) => {
                let old = super::compat::message(msg);
                let call = handler.call_handle(&mut self.store, &old);
                bounded(started, limits, call)
                    .await
                    .map(|r| r.map(|r| r.map_err(super::compat::handler_error)))
            }
            Guest::Native(handler) => Some(Ok(handler(msg))),
        };
        let result = result.unwrap_or_else(|| {
            self.store.data_mut().timed_out = true;
            Err(wasmtime::Error::msg(
                "wall-clock limit reached while blocked in a host call",
            ))
        });
        let ended = Instant::now();
        let elapsed = ended.duration_since(started);
        self.store.data_mut().flush_output();
        let fuel = if metered {
            limits
                .fuel
                .saturating_sub(self.store.get_fuel().unwrap_or(0))
        } else {
            0
        };
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
            ended,
        })
    }
}

/// Awaits a `handle` call under the wall-clock limit: `None` when the host's
/// own timer ended it (blocked in a host function, where epoch interruption
/// cannot reach). Polls like `tokio::time::timeout` (the call first, then
/// the timer), but arms the timer only once the call returned `Pending`:
/// almost every call finishes in its first poll, and creating a timer per
/// call cost a clock read and a shared-handle reference count (BENCHMARKS.md,
/// issue 17). The timer still ends `timeout + TIMER_GRACE` after `started`.
async fn bounded<T>(
    started: Instant,
    limits: &crate::config::LimitsConfig,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> Option<wasmtime::Result<T>> {
    use std::task::Poll;
    let mut call = std::pin::pin!(call);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        let timer = timer.get_or_insert_with(|| {
            let deadline = started + limits.timeout() + TIMER_GRACE;
            Box::pin(tokio::time::sleep_until(deadline.into()))
        });
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}
