//! What a guest's store holds: a locked-down WASI context, resource limits,
//! and the host side of the `log` import (which guest stdout and stderr feed).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{Level, streamhost};
use super::limits::{Counts, Limiter};
use super::output::GuestOutput;
use crate::effects::{EffectBuffer, EffectPolicy};

/// Cap on live WASI resources (streams, pollables) per store.
const MAX_RESOURCES: usize = 1_000;

/// What every `log` call costs against the log budget besides its bytes, so
/// that a million empty lines are as bounded as one long one.
pub const LOG_CALL_COST: usize = 64;

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
    /// Log calls (and stdout/stderr lines) dropped in the current invocation.
    pub(crate) log_dropped_lines: usize,
    /// What the guest wrote to stdout and stderr in the current invocation,
    /// logged (against the same budget) when it returns.
    pub(crate) stdout: GuestOutput,
    pub(crate) stderr: GuestOutput,
    /// What the plugin's effects may touch.
    pub(crate) effect_policy: Arc<EffectPolicy>,
    /// Effects buffered by the current invocation, committed with its ack.
    pub(crate) effects: EffectBuffer,
    /// Connection for state reads (`kv-get`); set by the worker that owns the instance.
    pub(crate) redis: Option<crate::connection::Conn>,
    /// State kept in memory instead of Redis (full key -> value), for the
    /// invoker (`streamhost invoke`), which runs without Redis.
    pub(crate) local_state: Option<std::collections::HashMap<String, Vec<u8>>>,
    /// Log lines kept for the invoker instead of going to the host's log.
    pub(crate) captured_logs: Option<Vec<(Level, String)>>,
}

impl HostState {
    /// A store state with no ambient authority: no preopens, env, args or
    /// stdin; stdout and stderr go to the plugin's log; every socket
    /// operation is denied (no TCP, no UDP, no name lookup, and the address
    /// check, wasmtime-wasi's default, refuses every address).
    pub fn new(
        plugin: Arc<str>,
        limits: &crate::config::LimitsConfig,
        effect_policy: Arc<EffectPolicy>,
    ) -> HostState {
        let memory_bytes =
            usize::try_from(limits.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        let (stdout, stderr) = (GuestOutput::new(), GuestOutput::new());
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        HostState {
            wasi,
            table,
            limiter: Limiter::new(memory_bytes, Counts::of(limits)),
            plugin,
            entry_id: String::new(),
            deadline: Instant::now(),
            timed_out: false,
            log_budget: 0,
            log_dropped: 0,
            log_dropped_lines: 0,
            stdout,
            stderr,
            effect_policy,
            effects: EffectBuffer::default(),
            redis: None,
            local_state: None,
            captured_logs: None,
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
        self.log_line(level, &message);
    }
}

impl HostState {
    /// Logs one guest line if the invocation's budget has room for it: each
    /// line costs [`LOG_CALL_COST`] plus its bytes. The first refusal empties
    /// the budget, so the rest of the invocation logs nothing.
    pub(crate) fn log_line(&mut self, level: Level, message: &str) {
        let cost = LOG_CALL_COST.saturating_add(message.len());
        if cost > self.log_budget {
            self.log_dropped += message.len();
            self.log_dropped_lines += 1;
            self.log_budget = 0;
            return;
        }
        self.log_budget -= cost;
        if let Some(captured) = &mut self.captured_logs {
            // Kept as written; the invoker neutralises it when it prints.
            captured.push((level, message.to_owned()));
            return;
        }
        let message = sanitize(message);
        let (plugin, id) = (&*self.plugin, self.entry_id.as_str());
        match level {
            Level::Trace => tracing::trace!(target: "plugin", plugin, id, "{message}"),
            Level::Debug => tracing::debug!(target: "plugin", plugin, id, "{message}"),
            Level::Info => tracing::info!(target: "plugin", plugin, id, "{message}"),
            Level::Warn => tracing::warn!(target: "plugin", plugin, id, "{message}"),
            Level::Error => tracing::error!(target: "plugin", plugin, id, "{message}"),
        }
    }

    /// Logs what the guest wrote to stdout (as info) and stderr (as warn)
    /// since the last call, one line per line, and empties both buffers.
    pub(crate) fn flush_output(&mut self) {
        let taken = [
            (self.stdout.take(), Level::Info),
            (self.stderr.take(), Level::Warn),
        ];
        for ((bytes, dropped), level) in taken {
            self.log_dropped += dropped;
            for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                self.log_line(level, &String::from_utf8_lossy(line));
            }
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
