"""Turning an upstream's failures into ``ProviderError``s. Pure: no I/O.

HTTP statuses (before any body is streamed)::

    400 404 413 422     bad_request   the upstream's own message, verbatim (the client needs it)
    401 403             auth          names the provider; never echoes the upstream's message,
                                      which may quote part of the API key
    408                 timeout
    429                 rate_limited  keeps Retry-After (seconds, HTTP date or retry-after-ms)
    other 4xx, 5xx      upstream      e.g. 402 billing, 500, 502 HTML pages, 529 overloaded

Error bodies may be OpenAI-shaped (``{"error": {"message": ...}}``), Anthropic-shaped
(``{"type": "error", "error": {...}}``), ``{"message": ...}``, ``{"detail": ...}``, plain text or an
HTML page; the message is extracted where there is one and HTML is never quoted.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from gateway.providers.base import ErrorKind, ProviderError

__all__ = [
    "error_from_event",
    "error_from_status",
    "extract_message",
    "kind_for_status",
    "parse_retry_after",
]

_MAX_MESSAGE = 500
_TEXT_SNIPPET = 200

# Substrings of an error ``type``/``code`` (OpenAI and Anthropic spellings) and their kinds;
# checked in order, so the more specific words come first.
_KIND_WORDS: tuple[tuple[str, ErrorKind], ...] = (
    ("rate_limit", "rate_limited"),
    ("authentication", "auth"),
    ("permission", "auth"),
    ("api_key", "auth"),
    ("timeout", "timeout"),
    ("invalid_request", "bad_request"),
    ("not_found", "bad_request"),
    ("request_too_large", "bad_request"),
    ("context_length", "bad_request"),
)


def kind_for_status(status: int) -> ErrorKind:
    """The error kind of a non-2xx upstream status (see the module docstring)."""
    if status in (400, 404, 413, 422):
        return "bad_request"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limited"
    return "upstream"


def error_from_status(
    provider: str,
    status: int,
    *,
    body: bytes,
    content_type: str = "",
    retry_after: str | None = None,
    retry_after_ms: str | None = None,
) -> ProviderError:
    """The ``ProviderError`` for an upstream answer with a non-2xx ``status``.

    ``body`` is whatever part of the error body was read (it may be truncated or empty).
    """
    kind = kind_for_status(status)
    upstream = extract_message(body, content_type)
    if kind == "auth":
        message = (
            f"Provider '{provider}' rejected the gateway's credentials (HTTP {status}); "
            f"check models.providers.{provider}.apiKey"
        )
    elif kind == "bad_request" and upstream:
        message = upstream
    else:
        detail = upstream or _describe_body(body, content_type)
        message = f"Provider '{provider}' answered HTTP {status}: {detail}"
    seconds = parse_retry_after(retry_after, retry_after_ms) if kind == "rate_limited" else None
    return ProviderError(
        kind,
        _cap(message),
        provider=provider,
        retry_after=seconds,
        upstream_status=status,
    )


def error_from_event(provider: str, error: object) -> ProviderError:
    """The ``ProviderError`` for an error reported inside a 200 stream.

    ``error`` is the value of the event's ``error`` member (an object or a bare string). The kind
    comes from a numeric ``code``/``status`` (as an HTTP status) or from words in ``type``/``code``
    (``rate_limit_error`` → rate_limited, ...); anything else is ``upstream``.
    """
    kind: ErrorKind = "upstream"
    message = ""
    if isinstance(error, dict):
        message = _text(error.get("message"))
        status = _as_status(error.get("code")) or _as_status(error.get("status"))
        if status is not None:
            kind = kind_for_status(status)
        else:
            words = f"{_text(error.get('type'))} {_text(error.get('code'))}".lower()
            kind = next((k for word, k in _KIND_WORDS if word in words), "upstream")
    elif isinstance(error, str):
        message = error
    if kind == "bad_request" and message:
        text = message
    else:
        text = f"Provider '{provider}' reported an error: {message or 'no message'}"
    return ProviderError(kind, _cap(text), provider=provider)


def extract_message(body: bytes, content_type: str = "") -> str | None:
    """The upstream's own error message from an error body, or ``None`` when it has none."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        document: Any = json.loads(text)
    except ValueError:
        document = None
    if document is not None:
        return _message_in(document)
    if "html" in content_type.lower() or text.startswith("<"):
        return None
    first_line = text.splitlines()[0]
    return first_line[:_TEXT_SNIPPET]


def parse_retry_after(value: str | None, value_ms: str | None = None) -> float | None:
    """Seconds to wait: ``Retry-After`` (delta-seconds or an HTTP date), else ``retry-after-ms``."""
    if value:
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
        else:
            if math.isfinite(seconds) and seconds >= 0:
                return seconds
    if value_ms:
        try:
            millis = float(value_ms)
        except ValueError:
            return None
        if math.isfinite(millis) and millis >= 0:
            return millis / 1000
    return None


def _message_in(document: Any) -> str | None:
    if isinstance(document, dict):
        for key in ("error", "message", "detail"):
            found = document.get(key)
            if isinstance(found, str) and found.strip():
                return found.strip()
            if isinstance(found, dict | list):
                inner = _message_in(found)
                if inner:
                    return inner
    if isinstance(document, list) and document:
        # FastAPI-style {"detail": [{"msg": ...}]} validation errors.
        first = document[0]
        if isinstance(first, dict):
            return _message_in(first) or _text(first.get("msg")) or None
    return None


def _describe_body(body: bytes, content_type: str) -> str:
    if not body.strip():
        return "empty body"
    kind = content_type.split(";")[0].strip() or "unknown content type"
    return f"unreadable error body ({kind})"


def _as_status(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 400 <= value <= 599:
        return value
    if isinstance(value, str) and re.fullmatch(r"[45]\d\d", value):
        return int(value)
    return None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _cap(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"
