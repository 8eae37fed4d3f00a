"""The one registered handler function (``@streamhost.handler``)."""

from typing import Callable, Optional

from ._message import Message

HandlerFn = Callable[[Message], None]

_registered: Optional[HandlerFn] = None


def handler(fn: HandlerFn) -> HandlerFn:
    """Marks ``fn(msg)`` as the plugin's handler and returns it unchanged.

    A component has exactly one handler: decorating a second function is an
    error, reported when the module is imported (at build time).
    """
    global _registered
    if not callable(fn):
        raise TypeError("@streamhost.handler decorates a function taking one Message")
    if _registered is not None and _registered is not fn:
        raise RuntimeError(
            f"@streamhost.handler used twice ({_registered.__name__} and {fn.__name__}): a plugin has one handler"
        )
    _registered = fn
    return fn


def registered() -> Optional[HandlerFn]:
    """The decorated handler, if any."""
    return _registered
