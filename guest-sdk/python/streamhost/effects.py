"""Effects: writes to Redis the host buffers during an invocation and commits
with the ack, so they happen exactly when the entry is acked.

Each needs the matching ``[plugin.allow]`` entry (``emit``, ``publish``,
``schedule``) in the plugin's config; state (``kv_*``) is the plugin's own and
needs none. A refusal raises :class:`streamhost.EffectError`.
"""

from typing import Iterable, List, Mapping, Optional, Tuple, Union

from . import _backend
from ._message import FieldValue, _as_bytes

Fields = Union[Mapping[str, FieldValue], Iterable[Tuple[str, FieldValue]]]


def _fields(fields: Fields) -> List[Tuple[str, bytes]]:
    items = fields.items() if isinstance(fields, Mapping) else fields
    return [(str(name), _as_bytes(value)) for name, value in items]


def emit(stream: str, fields: Fields, max_len: Optional[int] = None) -> None:
    """Appends an entry to ``stream`` (``XADD``), capped at about ``max_len`` entries if given.

    ``fields`` is a dict or a list of ``(name, value)`` pairs; values are bytes or str.
    """
    _backend.get().emit(stream, _fields(fields), max_len)


def publish(channel: str, payload: FieldValue) -> None:
    """Broadcasts ``payload`` on a Pub/Sub channel (subscribers may miss it)."""
    _backend.get().publish(channel, _as_bytes(payload))


def schedule(stream: str, fields: Fields, delay_ms: int) -> None:
    """Appends an entry to ``stream`` no sooner than ``delay_ms`` from now."""
    _backend.get().schedule(stream, _fields(fields), int(delay_ms))


def kv_get(key: str) -> Optional[bytes]:
    """Reads a key of this plugin's state; sees this invocation's own writes."""
    return _backend.get().kv_get(key)


def kv_set(key: str, value: FieldValue) -> None:
    """Writes a key of this plugin's state."""
    _backend.get().kv_set(key, _as_bytes(value))


def kv_delete(key: str) -> None:
    """Deletes a key of this plugin's state."""
    _backend.get().kv_delete(key)
