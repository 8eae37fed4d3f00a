//! The guest's `effects` imports, bound to an invocation's store: each call
//! is checked against the plugin's policy and buffered in its
//! [`EffectBuffer`](crate::effects::EffectBuffer) (state reads go to Redis),
//! to be committed with the ack by [`crate::effects`].

use super::bindings::streamhost::plugin::effects::Host;
use super::bindings::{EffectError, Field};
use super::state::HostState;
use crate::effects::{Effect, allowed, check_fields, fields_bytes, state_key};

impl Host for HostState {
    fn emit(
        &mut self,
        stream: String,
        fields: Vec<Field>,
        max_len: Option<u64>,
    ) -> Result<(), EffectError> {
        allowed(&self.effect_policy.emit, "emit to", &stream, &self.plugin)?;
        check_fields(&fields)?;
        if max_len.is_some_and(|n| n > i64::MAX as u64) {
            return Err(EffectError::Invalid("max-len is too large".into()));
        }
        let bytes = stream.len() + fields_bytes(&fields);
        let policy = self.effect_policy.clone();
        self.effects.push(
            &policy,
            Effect::Emit {
                stream,
                fields,
                max_len,
            },
            bytes,
        )
    }

    fn publish(&mut self, channel: String, payload: Vec<u8>) -> Result<(), EffectError> {
        allowed(
            &self.effect_policy.publish,
            "publish on",
            &channel,
            &self.plugin,
        )?;
        let bytes = channel.len() + payload.len();
        let policy = self.effect_policy.clone();
        self.effects
            .push(&policy, Effect::Publish { channel, payload }, bytes)
    }

    fn schedule(
        &mut self,
        stream: String,
        fields: Vec<Field>,
        delay_ms: u64,
    ) -> Result<(), EffectError> {
        allowed(
            &self.effect_policy.schedule,
            "schedule to",
            &stream,
            &self.plugin,
        )?;
        check_fields(&fields)?;
        let bytes = stream.len() + fields_bytes(&fields);
        // Due time is computed by the commit script on Redis's clock.
        let delay_ms = delay_ms.min(i64::MAX as u64 / 2);
        let policy = self.effect_policy.clone();
        self.effects.push(
            &policy,
            Effect::Schedule {
                stream,
                fields,
                delay_ms,
            },
            bytes,
        )
    }

    fn push(&mut self, key: String, item: Vec<u8>) -> Result<(), EffectError> {
        allowed(&self.effect_policy.push, "push to", &key, &self.plugin)?;
        let bytes = key.len() + item.len();
        let policy = self.effect_policy.clone();
        self.effects
            .push(&policy, Effect::Push { key, item }, bytes)
    }

    fn zadd(&mut self, key: String, member: Vec<u8>, score: f64) -> Result<(), EffectError> {
        allowed(&self.effect_policy.zadd, "zadd to", &key, &self.plugin)?;
        if score.is_nan() {
            return Err(EffectError::Invalid(
                "a sorted-set score cannot be NaN".into(),
            ));
        }
        let bytes = key.len() + member.len() + 16;
        let policy = self.effect_policy.clone();
        self.effects
            .push(&policy, Effect::Zadd { key, member, score }, bytes)
    }

    async fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, EffectError> {
        let full = state_key(&self.effect_policy, &key)?;
        if let Some(value) = self.effects.overlay.get(&full) {
            return Ok(value.clone());
        }
        if let Some((_, value)) = self.effects.reads.iter().find(|(k, _)| *k == full) {
            return Ok(value.clone());
        }
        if let Some(local) = &self.local_state {
            // `streamhost invoke`: state without Redis (see plugin/invoker.rs).
            return Ok(local.get(&full).cloned());
        }
        let Some(conn) = self.redis.as_mut() else {
            self.effects.read_failed = true;
            return Err(EffectError::Unavailable(
                "no Redis connection for state reads".into(),
            ));
        };
        let read: Result<Option<Vec<u8>>, _> = redis::cmd("GET").arg(&full).query_async(conn).await;
        let value = match read {
            Ok(value) => value,
            Err(e) => {
                self.effects.read_failed = true;
                return Err(EffectError::Unavailable(format!(
                    "reading state {key:?}: {e}"
                )));
            }
        };
        self.effects.reads.push((full, value.clone()));
        Ok(value)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), EffectError> {
        let full = state_key(&self.effect_policy, &key)?;
        let bytes = full.len() + value.len();
        let policy = self.effect_policy.clone();
        self.effects.push(
            &policy,
            Effect::Set {
                key: full.clone(),
                value: value.clone(),
            },
            bytes,
        )?;
        self.effects.overlay.insert(full, Some(value));
        Ok(())
    }

    fn kv_delete(&mut self, key: String) -> Result<(), EffectError> {
        let full = state_key(&self.effect_policy, &key)?;
        let bytes = full.len();
        let policy = self.effect_policy.clone();
        self.effects
            .push(&policy, Effect::Delete { key: full.clone() }, bytes)?;
        self.effects.overlay.insert(full, None);
        Ok(())
    }
}
