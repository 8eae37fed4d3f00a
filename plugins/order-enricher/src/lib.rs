//! Enriches valid orders: emits `order.accepted` with the VAT share computed to
//! `events:orders:accepted`, committed with the ack (so exactly once per order).
//! Invalid orders are rejected with the validator's reasons.

// The very rules of `order-validator`, shared as a source file.
#[path = "../../order-validator/src/order.rs"]
mod order;

use streamhost_sdk::{HandlerError, Message, effects, handler};

/// Where accepted orders go.
const ACCEPTED: &str = "events:orders:accepted";
/// VAT rate in percent.
const VAT_PERCENT: i64 = 20;

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let data = msg
        .field("data")
        .ok_or(order::Invalid::Missing("data"))
        .map_err(HandlerError::reject)?;
    let order = order::validate(data).map_err(HandlerError::reject)?;
    let vat_cents = order.amount_cents * VAT_PERCENT / (100 + VAT_PERCENT);
    effects::emit(
        ACCEPTED,
        [
            ("type", "order.accepted".to_owned()),
            ("order_id", order.order_id.to_string()),
            ("amount_cents", order.amount_cents.to_string()),
            ("vat_cents", vat_cents.to_string()),
            ("source_id", msg.id().to_owned()),
        ],
    )?;
    Ok(())
}
