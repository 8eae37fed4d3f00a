"""streamhost guest SDK for Python handlers.

Write a handler as a plain function and mark it with ``@streamhost.handler``::

    import streamhost
    from streamhost import Reject

    @streamhost.handler
    def handle(msg: streamhost.Message) -> None:
        order = msg.field_json("data")          # missing or bad JSON -> Reject
        if order.get("amount_cents", 0) < 0:
            raise Reject("amount_cents must be >= 0")
        streamhost.emit("orders.valid", {"order_id": str(order["order_id"])})

Returning acks the entry; ``raise Retry(reason)`` delivers it again after the
plugin's backoff; ``raise Reject(reason)`` dead-letters it. Effects (``emit``,
``publish``, ``schedule``, ``kv_get``/``kv_set``/``kv_delete``) are buffered by
the host and happen exactly when the entry is acked. ``streamhost.log`` (and the
standard ``logging`` module, and ``print``) go to the host's log.

``python -m streamhost.build`` turns a handler module into a component;
``streamhost.testing`` runs handlers natively, recording effects and logs.
"""

from ._errors import EffectError, Reject, Retry
from ._handler import handler
from ._message import Message
from .effects import emit, kv_delete, kv_get, kv_set, publish, schedule
from . import log

__all__ = [
    "EffectError",
    "Message",
    "Reject",
    "Retry",
    "emit",
    "handler",
    "kv_delete",
    "kv_get",
    "kv_set",
    "log",
    "publish",
    "schedule",
]
