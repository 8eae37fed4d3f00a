"""Why a handler did not accept an entry, and why the host refused an effect."""


class Retry(Exception):
    """Transient failure: the host delivers the entry again after the plugin's backoff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = str(reason)


class Reject(Exception):
    """Permanent failure: the host dead-letters the entry at once, with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = str(reason)


class EffectError(Exception):
    """The host refused an effect.

    ``kind`` is one of ``not-allowed`` (not in the plugin's ``[plugin.allow]``),
    ``limit-exceeded`` (per-invocation effect count or bytes used up),
    ``invalid`` (empty name, no fields, ...) or ``unavailable`` (state could
    not be read; retrying the entry may help).
    """

    KINDS = ("not-allowed", "limit-exceeded", "invalid", "unavailable")

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
