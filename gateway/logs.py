"""Structured logs: request ids, one line per HTTP request, JSON or text.

The request id of the request being served lives in a context variable: trio tasks inherit the
context they were spawned from, so every log line of a request (its handler, its run, its
provider) carries the id without passing it around. Secrets never reach a log line: nothing here
logs headers or bodies.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import uuid
from typing import Any

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gateway_request_id", default=None
)
_VALID_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}\Z")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}

access_logger = logging.getLogger("gateway.access")


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-Id`` when it is sane, else a new one."""
    if header and _VALID_ID.match(header):
        return header
    return uuid.uuid4().hex


def set_request_id(request_id: str | None) -> contextvars.Token[str | None]:
    return _REQUEST_ID.set(request_id)


def reset_request_id(token: contextvars.Token[str | None]) -> None:
    _REQUEST_ID.reset(token)


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``None`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _REQUEST_ID.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, then the extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            out["request_id"] = request_id
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _extras(record)
        request_id = getattr(record, "request_id", None)
        if request_id:
            fields = {"request_id": request_id, **fields}
        if fields:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in fields.items() if v is not None)
        return line


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """Send the ``gateway`` loggers to stderr in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger("gateway")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
