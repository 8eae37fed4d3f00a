//! Runs messages through a component without Redis (`streamhost invoke` and
//! `dev`): the host's sandbox and limits, effects recorded instead of
//! committed, logs kept instead of logged, state in memory.

use std::collections::HashMap;
use std::time::Duration;

use super::bindings::{Level, Message};
use super::instance::PluginInstance;
use super::registry::LoadedPlugin;
use crate::effects::Effect;
use crate::error::LoadError;
use crate::outcome::Outcome;

/// What one message came to.
#[derive(Debug)]
pub struct Report {
    /// ok / retry / reject / trap, as the host's settle step would see it.
    pub outcome: Outcome,
    /// The effects the handler asked for, in order (they would be committed
    /// with the ack; empty unless the outcome is ok).
    pub effects: Vec<Effect>,
    /// What the handler logged (and wrote to stdout/stderr), as written.
    pub logs: Vec<(Level, String)>,
    /// Fuel the invocation consumed.
    pub fuel: u64,
    /// Bytes of linear memory and tables the instance holds after the call
    /// (memories only grow, so this is its peak so far).
    pub peak_memory_bytes: usize,
    /// Wall-clock time of the call.
    pub elapsed: Duration,
    /// Whether a fresh instance was created for this message (the first
    /// message, or the one after a trap).
    pub instantiated: bool,
}

/// One plugin's instance, replaced after a trap as the host would, and the
/// plugin's state between messages.
pub struct Invoker {
    plugin: LoadedPlugin,
    instance: Option<PluginInstance>,
    /// Full state key -> value; an ok message's writes are applied to it.
    state: HashMap<String, Vec<u8>>,
}

impl Invoker {
    /// An invoker for a loaded plugin; instantiates on the first message.
    pub fn new(plugin: LoadedPlugin) -> Invoker {
        Invoker {
            plugin,
            instance: None,
            state: HashMap::new(),
        }
    }

    /// The plugin's state after the messages so far (full keys).
    pub fn state(&self) -> &HashMap<String, Vec<u8>> {
        &self.state
    }

    /// Runs one message under the plugin's limits.
    ///
    /// # Errors
    ///
    /// When the component cannot be instantiated (its start code trapped or
    /// exceeded a limit): then no message can run.
    pub async fn invoke(&mut self, msg: &Message) -> Result<Report, LoadError> {
        let instantiated = self.instance.is_none();
        let instance = match &mut self.instance {
            Some(instance) => instance,
            slot @ None => slot.insert(self.plugin.instantiate().await?),
        };
        {
            let state = instance.state_mut();
            state.local_state = Some(std::mem::take(&mut self.state));
            state.captured_logs = Some(Vec::new());
        }
        let invocation = instance
            .invoke(msg, &self.plugin.limits)
            .await
            // A trapped instance is dropped below, never called again.
            .map_err(|e| LoadError::Instantiate {
                plugin: self.plugin.name.to_string(),
                detail: e.to_string(),
            })?;
        let effects = instance.effects().effects().to_vec();
        let state = instance.state_mut();
        self.state = state.local_state.take().unwrap_or_default();
        let logs = state.captured_logs.take().unwrap_or_default();
        let peak_memory_bytes = state.limiter.used();
        if invocation.outcome == Outcome::Ok {
            for effect in &effects {
                match effect {
                    Effect::Set { key, value } => {
                        self.state.insert(key.clone(), value.clone());
                    }
                    Effect::Delete { key } => {
                        self.state.remove(key);
                    }
                    _ => {}
                }
            }
        }
        if instance.is_poisoned() {
            self.instance = None;
        }
        Ok(Report {
            outcome: invocation.outcome,
            effects,
            logs,
            fuel: invocation.fuel,
            peak_memory_bytes,
            elapsed: invocation.elapsed,
            instantiated,
        })
    }
}
