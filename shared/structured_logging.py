"""JSON logs, one line per event, carrying the call's identity from context variables.

A call session binds `call_sid`, `tenant_id` and `turn` once; every log line written from its tasks
(which copy the context when created) carries them without threading them through every call.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

_call_sid: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_sid", default=None)
_tenant_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant_id", default=None)
_turn: contextvars.ContextVar[int | None] = contextvars.ContextVar("turn", default=None)

_STANDARD_ATTRS = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


def current_call_sid() -> str | None:
    """The call the running task serves (bound by `bind_call`), if any."""
    return _call_sid.get()


def bind_call(call_sid: str | None = None, tenant_id: str | None = None) -> None:
    if call_sid is not None:
        _call_sid.set(call_sid)
    if tenant_id is not None:
        _tenant_id.set(tenant_id)


def bind_turn(turn: int) -> None:
    _turn.set(turn)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (("call_sid", _call_sid), ("tenant_id", _tenant_id), ("turn", _turn)):
            value = var.get()
            if value is not None:
                entry[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


QUIET_AT_INFO = ("httpx", "httpx2")


def configure_logging(level: str = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.Formatter.converter = time.gmtime
    # The HTTP clients log every request at INFO (six a call turn: model, voice, tools): their spans
    # already carry it, so only their warnings reach the log, unless the whole log is at DEBUG.
    for chatty in QUIET_AT_INFO:
        logging.getLogger(chatty).setLevel(max(root.level, logging.WARNING) if root.level > logging.DEBUG
                                           else logging.NOTSET)
