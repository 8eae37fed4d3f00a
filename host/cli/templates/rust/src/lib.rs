//! {{name}}: a streamhost handler. Field `data` must be a JSON object with an
//! integer `order_id`; anything else is rejected.

use streamhost_sdk::{HandlerError, Message, handler, log};

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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_order_is_rejected() {
        let msg = Message::new("test", "1-0").with_field("data", r#"{"order_id": "seven"}"#);
        assert!(matches!(handle(msg), Err(HandlerError::Reject(_))));
        let msg = Message::new("test", "1-0").with_field("data", "not json");
        assert!(matches!(handle(msg), Err(HandlerError::Reject(_))));
    }
}
