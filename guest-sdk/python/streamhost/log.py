"""Logging into the host's log, attributed to the plugin and the entry.

``streamhost.log.info("...")`` and friends; the standard :mod:`logging`
module's records go the same way (the SDK installs :class:`LogHandler` on the
root logger inside a component), and so does ``print`` (stdout as info,
stderr as warn). The host bounds each invocation's log bytes (``limits.log_bytes``).
"""

import logging

from . import _backend

LEVELS = ("trace", "debug", "info", "warn", "error")


def _log(level: str, message: object) -> None:
    _backend.get().log(level, str(message))


def trace(message: object) -> None:
    _log("trace", message)


def debug(message: object) -> None:
    _log("debug", message)


def info(message: object) -> None:
    _log("info", message)


def warn(message: object) -> None:
    _log("warn", message)


def error(message: object) -> None:
    _log("error", message)


def _level_of(record: logging.LogRecord) -> str:
    if record.levelno >= logging.ERROR:
        return "error"
    if record.levelno >= logging.WARNING:
        return "warn"
    if record.levelno >= logging.INFO:
        return "info"
    return "debug"


class LogHandler(logging.Handler):
    """A :mod:`logging` handler that writes records to the host's log."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _log(_level_of(record), self.format(record))
        except Exception:
            self.handleError(record)
