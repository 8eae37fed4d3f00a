//! {{name}}: a streamhost handler. Field `data` must be a JSON object with an
//! integer `order_id`; each valid order is emitted to `{{name}}.valid`,
//! anything else is rejected.

use streamhost_sdk::{HandlerError, Message, effects, handler, log};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    // Missing or not JSON: a FieldError, which `?` turns into a reject.
    let order: serde_json::Value = msg.field_json("data")?;
    let Some(id) = order.get("order_id").and_then(serde_json::Value::as_i64) else {
        return Err(HandlerError::reject(
            "data must be a JSON object with an integer order_id",
        ));
    };
    log::info(&format!("order {id} is valid"));
    // Refused unless streamhost.toml's [plugin.allow] emit lists the stream.
    effects::emit("{{name}}.valid", [("order_id", id.to_string())])?;
    Ok(())
}

/// Unit tests without a host: `cargo test`. The harness records effects
/// and logs and applies `[plugin.allow]` lists like the host.
#[cfg(test)]
mod tests {
    use super::*;
    use streamhost_sdk::testing::{Effect, Harness, Outcome, message};

    #[test]
    fn a_valid_order_is_emitted() {
        let mut harness = Harness::new().allow_emit(["{{name}}.valid"]);
        let result = harness.invoke(handle, message([("data", r#"{"order_id": 7}"#)]));
        assert_eq!(result.outcome, Outcome::Ok, "{}", result.reason);
        assert_eq!(
            result.effects,
            [Effect::emit("{{name}}.valid", [("order_id", "7")])]
        );
    }

    #[test]
    fn an_invalid_order_is_rejected() {
        for data in [r#"{"order_id": "seven"}"#, "not json"] {
            let result = Harness::new().invoke(handle, message([("data", data)]));
            assert_eq!(result.outcome, Outcome::Reject, "{data}");
        }
    }
}
