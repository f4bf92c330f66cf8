"""Reading a JSON request body from an ``Exchange``, and header values, for the API routes.

Bodies are parsed with the standard library's JSON parser (never json5: see the stack notes).
Every problem is an ``InvalidRequest`` (400) or the exchange's 413 / 408.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from gateway.errors import InvalidRequest
from gateway.http.exchange import Exchange
from gateway.text import SURROGATE_ESCAPE_BYTES, has_lone_surrogate


async def read_json(exchange: Exchange, limit: int, within: float) -> object:
    """The request body as a JSON document (any JSON value; the caller checks its shape)."""
    data = await exchange.read_body(limit, within)
    try:
        document = json.loads(data)
    except RecursionError:
        raise InvalidRequest("Invalid JSON body: nested too deeply.") from None
    except ValueError as exc:  # bad JSON, bad UTF-8, an integer of more than 4300 digits
        raise InvalidRequest(f"Invalid JSON body: {exc}") from None
    # A lone surrogate (``"\\ud800"``) decodes to a string no UTF-8 encoder accepts: the
    # response, the transcript and the upstream request would all fail on it later.
    if SURROGATE_ESCAPE_BYTES.search(data) and has_lone_surrogate(document):
        raise InvalidRequest("Invalid JSON body: a string contains an unpaired surrogate.")
    return document


CHANNEL_HEADER = "x-openclaw-message-channel"
# A short token (``webchat``, ``slack:C024BE91L``, ``ops.alerts``), kept as given.
_CHANNEL = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def agent_header(exchange: Exchange) -> str | None:
    """The agent a request names by header: ``x-openclaw-agent-id`` (or the legacy
    ``x-openclaw-agent``)."""
    return exchange.header(b"x-openclaw-agent-id") or exchange.header(b"x-openclaw-agent")


def message_channel(raw: str | None) -> str | None:
    """The ``x-openclaw-message-channel`` header's value (``None`` when absent or blank):
    1-64 of ``A-Z a-z 0-9 . _ : -`` once trimmed, case kept. ``InvalidRequest`` otherwise."""
    value = (raw or "").strip()
    if not value:
        return None
    if _CHANNEL.fullmatch(value) is None:
        raise InvalidRequest(
            f"Invalid `{CHANNEL_HEADER}`. Use 1-64 letters, digits, '.', '_', ':' or '-'.",
            param=CHANNEL_HEADER,
        )
    return value


# Printable ASCII but ``%`` and space: what a header value keeps of a key that needs escaping.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def header_value(text: str) -> str:
    """``text`` as an HTTP header value: as is when it is printable ASCII without edge spaces,
    else percent-encoded UTF-8 (a key from ``user`` may hold any character; a raw one would
    make the response itself fail)."""
    if text.isascii() and text.isprintable() and text == text.strip():
        return text
    return quote(text, safe=_HEADER_SAFE, errors="backslashreplace")
