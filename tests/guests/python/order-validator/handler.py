"""Validates orders like plugins/order-validator: field `data` must be a JSON
object with an integer `order_id` and an integer `amount_cents >= 0`."""

import json

import streamhost
from streamhost import Reject


def _integer(order: dict, name: str) -> int:
    if name not in order:
        raise Reject(f"missing field {name}")
    value = order[name]
    # bool is an int in Python; JSON true is not an integer.
    if not isinstance(value, int) or isinstance(value, bool):
        raise Reject(f"{name} must be an integer, got {type(value).__name__}")
    return value


@streamhost.handler
def handle(msg: streamhost.Message) -> None:
    raw = msg.field("data")
    if raw is None:
        raise Reject("missing field data")
    try:
        order = json.loads(raw)
    except ValueError as e:
        raise Reject(f"data is not JSON: {e}") from None
    if not isinstance(order, dict):
        raise Reject("data must be a JSON object")
    _integer(order, "order_id")
    amount = _integer(order, "amount_cents")
    if amount < 0:
        raise Reject(f"amount_cents must be >= 0, got {amount}")
