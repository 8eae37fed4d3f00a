//! What a guest's store holds: a locked-down WASI context, resource limits,
//! and the host side of the `log` import.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, streamhost};
use super::limits::Limiter;
use crate::effects::{EffectBuffer, EffectPolicy};

/// Cap on live WASI resources (streams, pollables) per store.
const MAX_RESOURCES: usize = 1_000;

/// Per-store data. One per instance; reset per invocation where it matters.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    /// Who is logging, for attribution.
    pub(crate) plugin: Arc<str>,
    /// The entry being handled, for attribution; empty between invocations.
    pub(crate) entry_id: String,
    /// When the current invocation must end (wall clock).
    pub(crate) deadline: Instant,
    /// Set when the epoch callback ended an invocation for its deadline.
    pub(crate) timed_out: bool,
    /// Log bytes the current invocation may still write.
    pub(crate) log_budget: usize,
    /// Log bytes dropped in the current invocation.
    pub(crate) log_dropped: usize,
    /// What the plugin's effects may touch.
    pub(crate) effect_policy: Arc<EffectPolicy>,
    /// Effects buffered by the current invocation, committed with its ack.
    pub(crate) effects: EffectBuffer,
    /// Connection for state reads (`kv-get`); set by the worker that owns the instance.
    pub(crate) redis: Option<redis::aio::ConnectionManager>,
}

impl HostState {
    /// A store state with no ambient authority: no preopens, env, args, stdio or network.
    pub fn new(
        plugin: Arc<str>,
        memory_bytes: usize,
        effect_policy: Arc<EffectPolicy>,
    ) -> HostState {
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        HostState {
            wasi,
            table,
            limiter: Limiter::new(memory_bytes),
            plugin,
            entry_id: String::new(),
            deadline: Instant::now(),
            timed_out: false,
            log_budget: 0,
            log_dropped: 0,
            effect_policy,
            effects: EffectBuffer::default(),
            redis: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl streamhost::plugin::types::Host for HostState {}

impl streamhost::plugin::log::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if message.len() > self.log_budget {
            self.log_dropped += message.len();
            self.log_budget = 0;
            return;
        }
        self.log_budget -= message.len();
        let message = sanitize(&message);
        let (plugin, id) = (&*self.plugin, self.entry_id.as_str());
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, id, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, id, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, id, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, id, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, id, "{message}"),
        }
    }
}

/// Replaces control characters (terminal escape sequences included) so a guest
/// cannot forge log lines or drive the operator's terminal.
pub fn sanitize(message: &str) -> std::borrow::Cow<'_, str> {
    if !message.chars().any(is_unsafe) {
        return message.into();
    }
    message
        .chars()
        .map(|c| if is_unsafe(c) { '\u{FFFD}' } else { c })
        .collect::<String>()
        .into()
}

/// Control characters, and the bidirectional overrides and isolates that can
/// make a log line read differently from what it contains.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

#[cfg(test)]
mod tests {
    #[test]
    fn sanitize_removes_escapes_and_newlines() {
        assert_eq!(super::sanitize("a\x1b[31mb\nc"), "a\u{FFFD}[31mb\u{FFFD}c");
        assert_eq!(super::sanitize("plain"), "plain");
        assert_eq!(super::sanitize("ok \u{202E}gnp.exe"), "ok \u{FFFD}gnp.exe");
        assert_eq!(super::sanitize("naïve ünïcode"), "naïve ünïcode");
    }
}
