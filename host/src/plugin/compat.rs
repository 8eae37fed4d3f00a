//! Components built against `streamhost:plugin@0.1.0`: their imports are
//! bound by converting to and from the 0.2 host functions, and a message is
//! handed to them as 0.1 saw it (`stream` = the stream, list key, sorted-set
//! key or channel; the payload of a non-stream source in field `data`).

use super::bindings::streamhost::plugin::effects::Host as Current;
use super::bindings::v0_1::streamhost::plugin as old;
use super::bindings::{EffectError, Field, HandlerError, Level, Message, Source};
use super::state::HostState;

/// The 0.1 message for `msg`.
pub(crate) fn message(msg: &Message) -> old::types::Message {
    old::types::Message {
        stream: stream_name(&msg.source),
        id: msg.id.clone(),
        fields: msg
            .fields
            .iter()
            .map(|f| old::types::Field {
                name: f.name.clone(),
                value: f.value.clone(),
            })
            .collect(),
        attempt: msg.attempt,
    }
}

/// What 0.1's `message.stream` holds for a source. A channel that is not
/// UTF-8 cannot be a 0.1 `string`: it is shown with replacement characters
/// (0.2 guests get it byte for byte).
pub(crate) fn stream_name(source: &Source) -> String {
    match source {
        Source::Stream(s) => s.name.clone(),
        Source::Pubsub(p) => String::from_utf8_lossy(&p.channel).into_owned(),
        Source::List(key) => key.clone(),
        Source::SortedSet(s) => s.key.clone(),
    }
}

/// A 0.1 handler's verdict.
pub(crate) fn handler_error(e: old::types::HandlerError) -> HandlerError {
    match e {
        old::types::HandlerError::Retry(m) => HandlerError::Retry(m),
        old::types::HandlerError::Reject(m) => HandlerError::Reject(m),
    }
}

fn fields(fields: Vec<old::types::Field>) -> Vec<Field> {
    fields
        .into_iter()
        .map(|f| Field {
            name: f.name,
            value: f.value,
        })
        .collect()
}

fn error(e: EffectError) -> old::effects::EffectError {
    match e {
        EffectError::NotAllowed(m) => old::effects::EffectError::NotAllowed(m),
        EffectError::LimitExceeded(m) => old::effects::EffectError::LimitExceeded(m),
        EffectError::Invalid(m) => old::effects::EffectError::Invalid(m),
        EffectError::Unavailable(m) => old::effects::EffectError::Unavailable(m),
    }
}

impl old::types::Host for HostState {}

impl old::log::Host for HostState {
    fn log(&mut self, level: old::log::Level, message: String) {
        let level = match level {
            old::log::Level::Trace => Level::Trace,
            old::log::Level::Debug => Level::Debug,
            old::log::Level::Info => Level::Info,
            old::log::Level::Warn => Level::Warn,
            old::log::Level::Error => Level::Error,
        };
        self.log_line(level, &message);
    }
}

impl old::effects::Host for HostState {
    fn emit(
        &mut self,
        stream: String,
        f: Vec<old::types::Field>,
        max_len: Option<u64>,
    ) -> Result<(), old::effects::EffectError> {
        Current::emit(self, stream, fields(f), max_len).map_err(error)
    }

    fn publish(
        &mut self,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), old::effects::EffectError> {
        Current::publish(self, channel, payload).map_err(error)
    }

    fn schedule(
        &mut self,
        stream: String,
        f: Vec<old::types::Field>,
        delay_ms: u64,
    ) -> Result<(), old::effects::EffectError> {
        Current::schedule(self, stream, fields(f), delay_ms).map_err(error)
    }

    async fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, old::effects::EffectError> {
        Current::kv_get(self, key).await.map_err(error)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), old::effects::EffectError> {
        Current::kv_set(self, key, value).map_err(error)
    }

    fn kv_delete(&mut self, key: String) -> Result<(), old::effects::EffectError> {
        Current::kv_delete(self, key).map_err(error)
    }
}
