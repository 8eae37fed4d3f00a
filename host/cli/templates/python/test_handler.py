"""Unit tests without a host: `python3 -m unittest` in this directory."""

import os
import sys
import unittest

# The SDK's directory (`streamhost new` wrote it; STREAMHOST_PYTHON_SDK overrides).
sys.path.insert(0, os.environ.get("STREAMHOST_PYTHON_SDK", {{python_sdk}}))

from streamhost.testing import Harness, message  # noqa: E402

import handler  # noqa: E402


class Handler(unittest.TestCase):
    def test_a_valid_order_is_emitted(self):
        result = Harness(allow_emit=["{{name}}.valid"]).invoke(handler.handle, message(data=b'{"order_id": 7}'))
        self.assertEqual(result.outcome, "ok", result.reason)
        self.assertEqual(result.effects, [("emit", "{{name}}.valid", [("order_id", b"7")], None)])

    def test_an_invalid_order_is_rejected(self):
        result = Harness().invoke(handler.handle, message(data=b'{"order_id": "seven"}'))
        self.assertEqual(result.outcome, "reject")


if __name__ == "__main__":
    unittest.main()
