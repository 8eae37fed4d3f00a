"""Where effects and log lines go: the host's imports inside a component, or
the recorder of :mod:`streamhost.testing` when run natively."""

from typing import Any, Optional

#: Set by ``_guest`` (inside a component) or ``testing`` (natively).
current: Optional[Any] = None


def get() -> Any:
    if current is None:
        raise RuntimeError(
            "streamhost effects and logs need a host: run the handler in a component, "
            "or natively through streamhost.testing.invoke(handle, msg)"
        )
    return current
