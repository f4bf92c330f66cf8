"""The WebSocket protocol's frames: wire shapes, parsing, encoding and errors. Pure, no I/O.

Every frame is one JSON object in one text message:

- request  ``{"type": "req", "id", "method", "params"?}`` (client to server);
- response ``{"type": "res", "id", "ok": true, "payload"}`` or
  ``{"type": "res", "id", "ok": false, "error": {"code", "message", "details"?, "retryable"?,
  "retryAfterMs"?}}``;
- event    ``{"type": "event", "event", "payload", "seq"?}`` (``seq`` counts from 1 per
  connection; ``connect.challenge`` has none).

Exception tree::

    WsError         an error response to a request (code, message, details)
    └── FrameError  the frame itself is unusable (not JSON, not a request); ``request_id`` is
                    the id it carried, if any
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NotRequired, TypedDict

from gateway.text import SURROGATE_ESCAPE, clean_document
from gateway.types import JSONObject

MAX_PROTOCOL_VERSION: Final = 4
MIN_PROTOCOL_VERSION: Final = 3

# Close codes (RFC 6455 section 7.4.1) the gateway uses.
CLOSE_NORMAL: Final = 1000
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_MESSAGE_TOO_BIG: Final = 1009
CLOSE_SERVICE_RESTART: Final = 1012

# Error codes of the reference protocol.
INVALID_REQUEST: Final = "INVALID_REQUEST"
FORBIDDEN: Final = "FORBIDDEN"
UNAVAILABLE: Final = "UNAVAILABLE"
AGENT_TIMEOUT: Final = "AGENT_TIMEOUT"

_MAX_ID_LENGTH = 512
_MAX_CLOSE_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code


class ErrorShape(TypedDict):
    code: str
    message: str
    details: NotRequired[JSONObject]
    retryable: NotRequired[bool]
    retryAfterMs: NotRequired[int]


class ResponseFrame(TypedDict):
    type: Literal["res"]
    id: str
    ok: bool
    payload: NotRequired[Any]
    error: NotRequired[ErrorShape]


class EventFrame(TypedDict):
    type: Literal["event"]
    event: str
    payload: Any
    seq: NotRequired[int]


@dataclass(frozen=True, slots=True)
class Policy:
    """Connection limits and timers. ``hello-ok`` announces the first three to the client.

    ``max_buffered_bytes`` and ``max_queued_frames`` bound a connection's outgoing queue (events
    beyond them are dropped; responses wait). Sizes of queued text are counted in characters.
    """

    max_payload: int = 25 * 1024 * 1024
    max_buffered_bytes: int = 50 * 1024 * 1024
    tick_interval: float = 30.0
    max_preauth_payload: int = 64 * 1024
    handshake_timeout: float = 10.0
    max_queued_frames: int = 1024
    max_requests_in_flight: int = 32
    # How long a shutdown waits for a connection's runs to report their end before closing.
    shutdown_grace: float = 2.0
    # How long the server waits for the client's close frame after sending its own, before
    # dropping the TCP connection.
    close_timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request frame; ``params`` is ``{}`` when the frame had none."""

    id: str
    method: str
    params: JSONObject = field(default_factory=dict)


class WsError(Exception):
    """An error the client gets as ``ok: false`` on its request."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        details: JSONObject | None = None,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms

    def shape(self) -> ErrorShape:
        shape: ErrorShape = {"code": self.code, "message": self.message}
        if self.details is not None:
            shape["details"] = self.details
        if self.retryable is not None:
            shape["retryable"] = self.retryable
        if self.retry_after_ms is not None:
            shape["retryAfterMs"] = self.retry_after_ms
        return shape


class FrameError(WsError):
    """The frame is not a usable request; ``request_id`` is its id when it had a valid one."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(INVALID_REQUEST, message)
        self.request_id = request_id


def invalid_params(method: str, problem: str, field_name: str | None = None) -> WsError:
    """``INVALID_REQUEST`` for bad params; ``details.field`` names the offending field."""
    details = {"field": field_name} if field_name is not None else None
    return WsError(INVALID_REQUEST, f"invalid {method} params: {problem}", details=details)


def parse_request(text: str | bytes) -> Request:
    """Parse one client frame. Raises ``FrameError`` for anything but a well-formed request."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise FrameError("invalid frame: not a JSON document") from None
    escapes = SURROGATE_ESCAPE.search(text) if isinstance(text, str) else None
    if escapes is not None or isinstance(text, bytes):
        # Unpaired surrogates could not be sent back or stored: replace them (U+FFFD).
        try:
            data = clean_document(data)
        except RecursionError:
            raise FrameError("invalid frame: not a JSON document") from None
    if not isinstance(data, dict):
        raise FrameError("invalid frame: expected a JSON object")
    raw_id = data.get("id")
    request_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= _MAX_ID_LENGTH else None
    if data.get("type") != "req":
        raise FrameError('invalid frame: expected type "req"', request_id)
    if request_id is None:
        raise FrameError("invalid frame: id must be a non-empty string")
    method = data.get("method")
    if not isinstance(method, str) or not method:
        raise FrameError("invalid frame: method must be a non-empty string", request_id)
    params = data.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise FrameError(f"invalid {method} params: params must be an object", request_id)
    return Request(request_id, method, params)


def ok_response(request_id: str, payload: Any) -> ResponseFrame:
    return {"type": "res", "id": request_id, "ok": True, "payload": payload}


def error_response(request_id: str, error: WsError, payload: Any = None) -> ResponseFrame:
    frame: ResponseFrame = {"type": "res", "id": request_id, "ok": False, "error": error.shape()}
    if payload is not None:
        frame["payload"] = payload
    return frame


def event_frame(event: str, payload: Any, seq: int | None = None) -> EventFrame:
    frame: EventFrame = {"type": "event", "event": event, "payload": payload}
    if seq is not None:
        frame["seq"] = seq
    return frame


_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def encode(frame: ResponseFrame | EventFrame) -> str:
    """The frame as the text of one WebSocket message."""
    return _encoder.encode(frame)


def too_large(text: str | bytes, limit: int) -> bool:
    """Whether a message is over ``limit`` bytes (UTF-8 for text), encoding only when needed."""
    if isinstance(text, bytes) or len(text) > limit or len(text) * 4 <= limit:
        return len(text) > limit
    return len(text.encode("utf-8")) > limit


def close_reason(text: str) -> str:
    """``text`` cut to what fits in a close frame (123 bytes of UTF-8)."""
    data = text.encode("utf-8")[:_MAX_CLOSE_REASON_BYTES]
    return data.decode("utf-8", errors="ignore")
