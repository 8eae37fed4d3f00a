"""Every effect from Python: for an order in field `data` (JSON with integer
`order_id` and `amount_cents`, optional `customer`), adds the amount to the
customer's running total in state, emits the order with the new total to
`orders.valid`, publishes `validated <id>` on `orders.events`, schedules a
follow-up on `orders.followup`, and logs. `"retry": true` asks for a second
attempt once; `"forget": true` deletes the customer's total instead."""

import logging

import streamhost
from streamhost import Reject, Retry

FOLLOW_UP_MS = 60_000


@streamhost.handler
def handle(msg: streamhost.Message) -> None:
    order = msg.field_json("data")
    if not isinstance(order, dict):
        raise Reject("data must be a JSON object")
    order_id, amount = order.get("order_id"), order.get("amount_cents")
    if not isinstance(order_id, int) or not isinstance(amount, int):
        raise Reject("order_id and amount_cents must be integers")
    if order.get("retry") and msg.attempt == 1:
        raise Retry("asked to retry once")
    customer = str(order.get("customer", "anon"))
    key = f"total:{customer}"
    if order.get("forget"):
        streamhost.kv_delete(key)
        streamhost.log.info(f"forgot {customer}")
        return
    total = int(streamhost.kv_get(key) or b"0") + amount
    streamhost.kv_set(key, str(total))
    streamhost.emit(
        "orders.valid",
        {"order_id": str(order_id), "amount_cents": str(amount), "customer_total": str(total)},
        max_len=10_000,
    )
    streamhost.publish("orders.events", f"validated {order_id}")
    streamhost.schedule("orders.followup", [("order_id", str(order_id))], FOLLOW_UP_MS)
    logging.info("order %s: %s total %d", order_id, customer, total)
