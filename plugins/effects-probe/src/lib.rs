//! Test plugin for effects, driven by fields: `op` = `emit`, `emit-then-fail`,
//! `emit-and-set` (emit to `target`, then set state key `k`), `delete` (delete
//! state key `target`), `publish` or `schedule`; `target` = stream or channel; `delay_ms` for
//! `schedule`. A refused effect rejects the entry with the host's error text.

use std::time::Duration;

use streamhost_sdk::{HandlerError, Message, effects, handler};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let op = msg.field_str("op")?;
    let target = msg.field_str("target")?;
    let payload = [("from", msg.id().to_owned())];
    match op {
        "emit" => effects::emit(target, payload).map_err(HandlerError::reject),
        "emit-then-fail" => {
            effects::emit(target, payload).map_err(HandlerError::reject)?;
            Err(HandlerError::reject(
                "failing after emit: the emit must not happen",
            ))
        }
        "emit-and-set" => {
            effects::emit(target, payload).map_err(HandlerError::reject)?;
            effects::kv::set("k", "touched").map_err(HandlerError::reject)
        }
        "delete" => effects::kv::delete(target).map_err(HandlerError::reject),
        "publish" => effects::publish(target, msg.id()).map_err(HandlerError::reject),
        "schedule" => {
            let delay: u64 = msg.field_parse("delay_ms")?;
            effects::schedule(target, payload, Duration::from_millis(delay))
                .map_err(HandlerError::reject)
        }
        other => Err(HandlerError::reject(format!("unknown op {other:?}"))),
    }
}
