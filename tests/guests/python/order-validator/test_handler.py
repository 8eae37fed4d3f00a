"""Native unit tests: `python -m unittest` in this directory (SDK on PYTHONPATH)."""

import unittest

from streamhost.testing import invoke, message

import handler


class OrderValidator(unittest.TestCase):
    def test_valid_and_invalid_orders(self):
        ok = invoke(handler.handle, message(data=b'{"order_id": 1, "amount_cents": 250}'))
        self.assertEqual((ok.outcome, ok.effects), ("ok", []))
        cases = {
            b'{"order_id": 2, "amount_cents": -5}': "amount_cents must be >= 0, got -5",
            b"[1]": "data must be a JSON object",
            b'{"amount_cents": 1}': "missing field order_id",
            b'{"order_id": true, "amount_cents": 1}': "order_id must be an integer, got bool",
        }
        for data, reason in cases.items():
            result = invoke(handler.handle, message(data=data))
            self.assertEqual((result.outcome, result.reason), ("reject", reason), data)
        self.assertEqual(invoke(handler.handle, message(other=b"")).reason, "missing field data")


if __name__ == "__main__":
    unittest.main()
