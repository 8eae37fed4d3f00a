//! An event-sourcing projection: folds orders into each customer's order count
//! and total in the plugin's key-value state. The state write commits with the
//! ack, so no order is counted twice or missed, whatever crashes happen.

use serde::{Deserialize, Serialize};
use streamhost_sdk::{HandlerError, Message, effects::kv, handler};

#[derive(Deserialize)]
struct Order {
    customer: String,
    amount_cents: i64,
}

/// The projection of one customer, stored as JSON under `customer:<id>`.
#[derive(Default, Serialize, Deserialize)]
struct Totals {
    count: u64,
    total_cents: i64,
}

#[handler]
fn handle(msg: Message) -> Result<(), HandlerError> {
    let order: Order = msg.field_json("data")?;
    let key = format!("customer:{}", order.customer);
    let mut totals: Totals = match kv::get(&key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| HandlerError::reject(format!("corrupt state {key}: {e}")))?,
        None => Totals::default(),
    };
    totals.count += 1;
    totals.total_cents += order.amount_cents;
    let json = serde_json::to_vec(&totals).map_err(|e| HandlerError::reject(e.to_string()))?;
    kv::set(&key, json)?;
    Ok(())
}
