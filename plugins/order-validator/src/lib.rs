//! Validates orders: field `data` must be a JSON object with an integer `order_id`
//! and an integer `amount_cents >= 0`; anything else is rejected, naming what is wrong.

pub mod order;

use streamhost_sdk::{HandlerError, Message, handler};

use crate::order::{Invalid, validate};

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    msg.field("data")
        .ok_or(Invalid::Missing("data"))
        .and_then(validate)
        .map(drop)
        .map_err(HandlerError::reject)
}
