"""The component side: implements the WIT world ``streamhost:plugin/handler``
with the generated bindings and routes effects and logs to the host imports.

Imported only by the entry module ``python -m streamhost.build`` generates;
authors never see the bindings.
"""

import logging
import traceback

import wit_world
from componentize_py_types import Err
from wit_world.imports import effects as _fx
from wit_world.imports import log as _log
from wit_world.imports import types as _types

from . import _backend, _handler
from ._errors import EffectError, Reject, Retry
from ._message import Message
from .log import LogHandler

_LEVELS = {
    "trace": _log.Level.TRACE,
    "debug": _log.Level.DEBUG,
    "info": _log.Level.INFO,
    "warn": _log.Level.WARN,
    "error": _log.Level.ERROR,
}

_KINDS = {
    _fx.EffectError_NotAllowed: "not-allowed",
    _fx.EffectError_LimitExceeded: "limit-exceeded",
    _fx.EffectError_Invalid: "invalid",
    _fx.EffectError_Unavailable: "unavailable",
}


def _effect_error(err: Err) -> EffectError:
    value = err.value
    return EffectError(_KINDS.get(type(value), "invalid"), str(getattr(value, "value", value)))


def _wit_fields(fields):
    return [_types.Field(name, value) for name, value in fields]


class _Host:
    """Backend that calls the host's imports."""

    def log(self, level: str, message: str) -> None:
        _log.log(_LEVELS.get(level, _log.Level.INFO), message)

    def emit(self, stream, fields, max_len):
        try:
            _fx.emit(stream, _wit_fields(fields), max_len)
        except Err as e:
            raise _effect_error(e) from None

    def publish(self, channel, payload):
        try:
            _fx.publish(channel, payload)
        except Err as e:
            raise _effect_error(e) from None

    def schedule(self, stream, fields, delay_ms):
        try:
            _fx.schedule(stream, _wit_fields(fields), delay_ms)
        except Err as e:
            raise _effect_error(e) from None

    def kv_get(self, key):
        try:
            return _fx.kv_get(key)
        except Err as e:
            raise _effect_error(e) from None

    def kv_set(self, key, value):
        try:
            _fx.kv_set(key, value)
        except Err as e:
            raise _effect_error(e) from None

    def kv_delete(self, key):
        try:
            _fx.kv_delete(key)
        except Err as e:
            raise _effect_error(e) from None


_backend.current = _Host()
_root = logging.getLogger()
_root.addHandler(LogHandler())
_root.setLevel(logging.INFO)


class WitWorld(wit_world.WitWorld):
    def handle(self, msg: _types.Message) -> None:
        fn = _handler.registered()
        if fn is None:
            raise Err(_types.HandlerError_Reject("no function is marked @streamhost.handler"))
        message = Message(msg.stream, msg.id, [(f.name, f.value) for f in msg.fields], msg.attempt)
        try:
            fn(message)
        except Retry as e:
            raise Err(_types.HandlerError_Retry(e.reason)) from None
        except Reject as e:
            raise Err(_types.HandlerError_Reject(e.reason)) from None
        except Exception:
            # A bug, like a Rust panic: say where, then trap (the host counts
            # it as a trap and replaces the instance).
            _log.log(_log.Level.ERROR, traceback.format_exc())
            raise
