"""Native unit tests: `python -m unittest` in this directory (SDK on PYTHONPATH)."""

import unittest

from streamhost.testing import Harness, message

import handler


def order(**fields):
    import json

    return message(data=json.dumps(fields))


class EffectsExample(unittest.TestCase):
    def test_an_order_records_every_effect_and_the_running_total(self):
        h = Harness(allow_emit=["orders.valid"], allow_publish=["orders.events"], allow_schedule=["orders.followup"])
        first = h.invoke(handler.handle, order(order_id=1, amount_cents=250, customer="ann"))
        self.assertEqual(first.outcome, "ok", first.reason)
        self.assertEqual(
            first.effects,
            [
                ("kv_set", "total:ann", b"250"),
                ("emit", "orders.valid", [("order_id", b"1"), ("amount_cents", b"250"), ("customer_total", b"250")], 10_000),
                ("publish", "orders.events", b"validated 1"),
                ("schedule", "orders.followup", [("order_id", b"1")], 60_000),
            ],
        )
        self.assertEqual(first.logs, [("info", "order 1: ann total 250")])
        second = h.invoke(handler.handle, order(order_id=2, amount_cents=50, customer="ann"))
        self.assertEqual(second.effects[0], ("kv_set", "total:ann", b"300"))
        self.assertEqual(h.state, {"total:ann": b"300"})

    def test_bad_orders_are_rejected_and_retry_asks_once(self):
        h = Harness()
        self.assertEqual(h.invoke(handler.handle, message(other=b"x")).reason, "missing field `data`")
        self.assertEqual(h.invoke(handler.handle, message(data=b"{")).outcome, "reject")
        retried = h.invoke(handler.handle, order(order_id=1, amount_cents=1, retry=True))
        self.assertEqual((retried.outcome, retried.effects), ("retry", []))
        again = h.invoke(handler.handle, message(attempt=2, data=b'{"order_id":1,"amount_cents":1,"retry":true}'))
        self.assertEqual(again.outcome, "ok")

    def test_a_refused_effect_is_an_effect_error(self):
        h = Harness(allow_emit=[])
        result = h.invoke(handler.handle, order(order_id=1, amount_cents=1))
        self.assertEqual(result.outcome, "trap")
        self.assertIn("not-allowed", result.reason)


if __name__ == "__main__":
    unittest.main()
