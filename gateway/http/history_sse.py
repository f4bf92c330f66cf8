"""Session history as JSON documents, and live history as Server-Sent Events in OpenClaw's
framing. Pure: entries and documents in, documents and bytes out, no I/O.

A live history stream (``GET /sessions/<key>/history`` with ``Accept: text/event-stream``)::

    retry: 1000

    event: history
    data: {"sessionKey":"s1","messages":[...],"hasMore":false}

    event: message
    data: {"sessionKey":"s1","message":{...},"messageId":"<runId>:<seq>","messageSeq":7}

    : keepalive

``retry`` first, on its own; then the snapshot (the JSON answer's messages, ``hasMore`` where
the JSON answer has a ``nextCursor``); then one ``message`` per message appended afterwards,
shaped like a snapshot message; a ``: keepalive`` comment while nothing happens. Each event
block is exactly its ``event:`` and ``data:`` lines, then a blank line: the data is one line of
compact JSON (JSON escapes the line breaks inside strings).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.http.exchange import json_bytes
from gateway.sessions.base import TranscriptEntry
from gateway.types import JSONObject

CONTENT_TYPE = "text/event-stream; charset=utf-8"
RETRY = b"retry: 1000\n\n"
KEEPALIVE = b": keepalive\n\n"


def entry_json(entry: TranscriptEntry) -> JSONObject:
    """A stored message as the history endpoint shows it (an aborted reply says so; the
    message channel its run was given, when there was one)."""
    out: JSONObject = dict(entry.message)
    out["timestamp"] = entry.created_at_ms
    out["runId"] = entry.run_id
    out["status"] = entry.status
    if entry.status == "aborted":
        out["aborted"] = True
    if entry.usage is not None:
        out["usage"] = dict(entry.usage)
    if entry.channel is not None:
        out["channel"] = entry.channel
    return out


def message_id(entry: TranscriptEntry) -> str:
    """A message's id in live history: ``<runId>:<seq>``, the same for every client and on
    every host (seq alone comes back after a reset)."""
    return f"{entry.run_id}:{entry.seq}"


def event(name: str, data: JSONObject) -> bytes:
    """One event block: ``event: <name>``, ``data: <json>``, a blank line."""
    return b"event: " + name.encode() + b"\ndata: " + json_bytes(data) + b"\n\n"


def history_event(session_key: str, entries: Sequence[TranscriptEntry], has_more: bool) -> bytes:
    return event(
        "history",
        {
            "sessionKey": session_key,
            "messages": [entry_json(entry) for entry in entries],
            "hasMore": has_more,
        },
    )


def message_events(session_key: str, entries: Sequence[TranscriptEntry]) -> bytes:
    """One ``message`` event per entry, in their order."""
    return b"".join(
        event(
            "message",
            {
                "sessionKey": session_key,
                "message": entry_json(entry),
                "messageId": message_id(entry),
                "messageSeq": entry.seq,
            },
        )
        for entry in entries
    )


def wants_event_stream(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for ``text/event-stream`` (by name, not through a
    wildcard, and not with ``q=0``)."""
    for media_range in (accept or "").split(","):
        media, *params = media_range.split(";")
        if media.strip().lower() != "text/event-stream":
            continue
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value.strip()) > 0
                except ValueError:
                    return False
        return True
    return False
