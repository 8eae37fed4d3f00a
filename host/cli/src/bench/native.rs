//! `order-validator` as a native handler: the very rules file of the plugin,
//! compiled into the host, so the native baseline does exactly the same work.

#[path = "../../../../plugins/order-validator/src/order.rs"]
#[allow(dead_code)] // The validated order's fields are not read, as in the plugin.
mod order;

use streamhost::plugin::{HandlerError, Message};

/// Mirrors `plugins/order-validator/src/lib.rs`: the first field named `data`
/// must hold a valid order; anything else is rejected with the same reason.
pub fn validate_order(msg: &Message) -> Result<(), HandlerError> {
    msg.fields
        .iter()
        .find(|f| f.name == "data")
        .map(|f| f.value.as_slice())
        .ok_or(order::Invalid::Missing("data"))
        .and_then(order::validate)
        .map(drop)
        .map_err(|e| HandlerError::Reject(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamhost::plugin::{Field, Source, StreamEntry};

    fn msg(fields: &[(&str, &str)]) -> Message {
        Message {
            source: Source::Stream(StreamEntry {
                name: "s".into(),
                id: "1-0".into(),
            }),
            id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(n, v)| Field {
                    name: (*n).into(),
                    value: v.as_bytes().to_vec(),
                })
                .collect(),
            attempt: 1,
        }
    }

    #[test]
    fn same_verdicts_as_the_plugin() {
        let order = super::super::workload::order_json(5);
        assert_eq!(validate_order(&msg(&[("data", &order)])), Ok(()));
        assert_eq!(
            validate_order(&msg(&[("other", "x")])),
            Err(HandlerError::Reject("missing field data".into()))
        );
        assert_eq!(
            validate_order(&msg(&[("data", r#"{"order_id":1,"amount_cents":-2}"#)])),
            Err(HandlerError::Reject(
                "amount_cents must be >= 0, got -2".into()
            ))
        );
        // The first `data` counts, as with the SDK's `Message::field`.
        assert!(validate_order(&msg(&[("data", "nope"), ("data", &order)])).is_err());
    }
}
