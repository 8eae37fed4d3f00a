"""One stream entry as a handler sees it, with typed access to its fields."""

import json
from typing import Any, Iterable, List, Optional, Tuple, Union

from ._errors import Reject

FieldValue = Union[bytes, bytearray, str]


def _as_bytes(value: FieldValue) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


class Message:
    """One stream entry.

    Field values are bytes, as in Redis. If a name occurs more than once
    (Redis allows it), lookups return the first occurrence. The ``field_*``
    readers raise :class:`Reject` when a field is missing or malformed: such
    an entry cannot become valid by retrying.
    """

    __slots__ = ("stream", "id", "fields", "attempt")

    def __init__(
        self,
        stream: str = "test",
        id: str = "0-1",
        fields: Iterable[Tuple[str, FieldValue]] = (),
        attempt: int = 1,
    ) -> None:
        #: The stream the entry was read from.
        self.stream = stream
        #: The entry id, e.g. ``1700000000000-0``.
        self.id = id
        #: All fields as ``(name, value)`` pairs, in the order they were written.
        self.fields: List[Tuple[str, bytes]] = [(n, _as_bytes(v)) for n, v in fields]
        #: 1-based delivery attempt, counted by Redis.
        self.attempt = attempt

    def __repr__(self) -> str:
        return f"Message(stream={self.stream!r}, id={self.id!r}, fields={self.fields!r}, attempt={self.attempt})"

    def field(self, name: str) -> Optional[bytes]:
        """The raw bytes of field ``name``, or ``None`` when absent."""
        for n, value in self.fields:
            if n == name:
                return value
        return None

    def _required(self, name: str) -> bytes:
        value = self.field(name)
        if value is None:
            raise Reject(f"missing field `{name}`")
        return value

    def field_str(self, name: str) -> str:
        """Field ``name`` as UTF-8 text; :class:`Reject` if missing or not UTF-8."""
        try:
            return self._required(name).decode("utf-8")
        except UnicodeDecodeError:
            raise Reject(f"field `{name}` is not UTF-8") from None

    def field_json(self, name: str) -> Any:
        """Field ``name`` parsed as JSON; :class:`Reject` if missing or not JSON."""
        raw = self._required(name)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise Reject(f"field `{name}` is not JSON: {e}") from None

    def field_int(self, name: str) -> int:
        """Field ``name`` as a decimal integer; :class:`Reject` if missing or not one."""
        text = self.field_str(name)
        try:
            return int(text, 10)
        except ValueError:
            raise Reject(f"field `{name}` is not an integer: {text!r}") from None
