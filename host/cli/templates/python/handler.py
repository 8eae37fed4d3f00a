"""{{name}}: a streamhost handler. Field `data` must be a JSON object with an
integer `order_id`; each valid order is emitted to `{{name}}.valid`."""

import streamhost
from streamhost import Reject


@streamhost.handler
def handle(msg: streamhost.Message) -> None:
    order = msg.field_json("data")  # missing or not JSON: Reject
    if not isinstance(order, dict) or not isinstance(order.get("order_id"), int):
        raise Reject("data must be a JSON object with an integer order_id")
    streamhost.log.info(f"order {order['order_id']} is valid")
    streamhost.emit("{{name}}.valid", {"order_id": str(order["order_id"])})
