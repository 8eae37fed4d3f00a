"""Runs a handler natively, without a host: effects and log lines are
recorded, state lives in a dict, and the outcome is what the host would see.

    from streamhost.testing import Harness, message

    h = Harness(allow_emit=["orders.valid"])
    result = h.invoke(handle, message(data=b'{"order_id": 1, "amount_cents": 5}'))
    assert result.outcome == "ok"
    assert result.effects == [("emit", "orders.valid", [("order_id", b"1")], None)]

Like the host, effects of an attempt that did not return ok are dropped, and
an ``[plugin.allow]`` list given here refuses what it does not match with
``EffectError("not-allowed", ...)`` (``None``, the default, allows everything).
"""

import fnmatch
import logging
import traceback
from typing import Dict, List, Optional, Sequence, Tuple

from . import _backend, _handler
from ._errors import EffectError, Reject, Retry
from ._message import FieldValue, Message, _as_bytes
from .log import LogHandler


def message(stream: str = "test", id: str = "0-1", attempt: int = 1, **fields: FieldValue) -> Message:
    """A message with the given keyword fields (``data=b"..."``)."""
    return Message(stream, id, list(fields.items()), attempt)


class Result:
    """What one invocation came to."""

    def __init__(self, outcome: str, reason: str, effects: list, logs: list, error: Optional[BaseException]):
        #: ``ok``, ``retry``, ``reject`` or ``trap`` (an unexpected exception).
        self.outcome = outcome
        #: The reason given to Retry/Reject, or the exception's text for a trap.
        self.reason = reason
        #: Effects the host would commit with the ack (empty unless ok), as tuples:
        #: ``("emit", stream, fields, max_len)``, ``("publish", channel, payload)``,
        #: ``("schedule", stream, fields, delay_ms)``, ``("kv_set", key, value)``, ``("kv_delete", key)``.
        self.effects = effects
        #: ``(level, text)`` lines the handler logged.
        self.logs = logs
        #: The exception of a trap.
        self.error = error

    def __repr__(self) -> str:
        return f"Result(outcome={self.outcome!r}, reason={self.reason!r}, effects={self.effects!r})"


class Harness:
    """A native stand-in for the host: records effects and logs, keeps state in ``self.state``."""

    def __init__(
        self,
        allow_emit: Optional[Sequence[str]] = None,
        allow_publish: Optional[Sequence[str]] = None,
        allow_schedule: Optional[Sequence[str]] = None,
        state: Optional[Dict[str, FieldValue]] = None,
    ) -> None:
        self._allow = {"emit to": allow_emit, "publish on": allow_publish, "schedule to": allow_schedule}
        #: The plugin's state; an ok invocation's kv writes are applied to it.
        self.state: Dict[str, bytes] = {k: _as_bytes(v) for k, v in (state or {}).items()}
        self._effects: list = []
        self._logs: List[Tuple[str, str]] = []
        self._overlay: Dict[str, Optional[bytes]] = {}

    def _check(self, what: str, name: str) -> None:
        if not name:
            raise EffectError("invalid", f"empty {what} name")
        patterns = self._allow[what]
        if patterns is not None and not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            raise EffectError("not-allowed", f"may not {what} {name!r} (see [plugin.allow])")

    @staticmethod
    def _check_fields(fields) -> None:
        if not fields:
            raise EffectError("invalid", "an entry needs at least one field")

    # The backend interface (see _guest._Host).
    def log(self, level: str, message: str) -> None:
        self._logs.append((level, message))

    def emit(self, stream, fields, max_len):
        self._check("emit to", stream)
        self._check_fields(fields)
        self._effects.append(("emit", stream, fields, max_len))

    def publish(self, channel, payload):
        self._check("publish on", channel)
        self._effects.append(("publish", channel, payload))

    def schedule(self, stream, fields, delay_ms):
        self._check("schedule to", stream)
        self._check_fields(fields)
        self._effects.append(("schedule", stream, fields, delay_ms))

    def kv_get(self, key):
        if key in self._overlay:
            return self._overlay[key]
        return self.state.get(key)

    def kv_set(self, key, value):
        self._effects.append(("kv_set", key, value))
        self._overlay[key] = value

    def kv_delete(self, key):
        self._effects.append(("kv_delete", key))
        self._overlay[key] = None

    def invoke(self, fn=None, msg: Optional[Message] = None) -> Result:
        """Calls ``fn(msg)`` (default: the ``@streamhost.handler`` function) like the host would."""
        fn = fn or _handler.registered()
        if fn is None:
            raise RuntimeError("no function is marked @streamhost.handler")
        msg = msg if msg is not None else message()
        self._effects, self._logs, self._overlay = [], [], {}
        previous, _backend.current = _backend.current, self
        # `logging` records reach the log as inside a component (see _guest).
        root, log_handler = logging.getLogger(), LogHandler()
        root_level = root.level
        root.addHandler(log_handler)
        root.setLevel(logging.INFO)
        outcome, reason, error = "ok", "", None
        try:
            fn(msg)
        except Retry as e:
            outcome, reason = "retry", e.reason
        except Reject as e:
            outcome, reason = "reject", e.reason
        except Exception as e:  # a bug: the host would see a trap
            outcome, reason, error = "trap", "".join(traceback.format_exception_only(type(e), e)).strip(), e
        finally:
            _backend.current = previous
            root.removeHandler(log_handler)
            root.setLevel(root_level)
        effects = self._effects if outcome == "ok" else []
        if outcome == "ok":
            for key, value in self._overlay.items():
                if value is None:
                    self.state.pop(key, None)
                else:
                    self.state[key] = value
        return Result(outcome, reason, effects, self._logs, error)


def invoke(fn, msg: Message, **harness_args) -> Result:
    """One invocation on a fresh :class:`Harness`."""
    return Harness(**harness_args).invoke(fn, msg)
