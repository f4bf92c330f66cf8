"""Session history documents and the live history framing (``gateway.http.history_sse``), and
the message channel header's rule (``gateway.http.body.message_channel``): pure, no sockets."""

from __future__ import annotations

import json

import pytest

from gateway.errors import InvalidRequest
from gateway.http.body import message_channel
from gateway.http.history_sse import (
    KEEPALIVE,
    RETRY,
    entry_json,
    history_event,
    message_events,
    wants_event_stream,
)
from gateway.sessions.base import TranscriptEntry
from gateway.types import UsageDict

USAGE: UsageDict = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
USER = TranscriptEntry(7, {"role": "user", "content": "hi\nthere"}, "r1", "complete", 1000)
REPLY = TranscriptEntry(
    8, {"role": "assistant", "content": "cut"}, "r1", "aborted", 1001, USAGE, "slack:C1"
)


def blocks(data: bytes) -> list[list[str]]:
    """The stream's blocks, each its lines; asserts every block ends with a blank line."""
    text = data.decode()
    assert text.endswith("\n\n")
    return [block.split("\n") for block in text[:-2].split("\n\n")]


def test_history_messages_show_the_channel_when_there_is_one() -> None:
    assert entry_json(USER) == {
        "role": "user", "content": "hi\nthere", "timestamp": 1000, "runId": "r1",
        "status": "complete",
    }  # fmt: skip
    assert entry_json(REPLY) == {
        "role": "assistant", "content": "cut", "timestamp": 1001, "runId": "r1",
        "status": "aborted", "aborted": True, "usage": USAGE, "channel": "slack:C1",
    }  # fmt: skip


def test_retry_and_keepalive() -> None:
    assert blocks(RETRY) == [["retry: 1000"]]
    assert blocks(KEEPALIVE) == [[": keepalive"]]


def test_the_history_event_is_exactly_its_two_lines() -> None:
    [block] = blocks(history_event("s1", [USER, REPLY], True))
    assert len(block) == 2 and block[0] == "event: history"
    assert block[1].startswith("data: ")
    assert json.loads(block[1][6:]) == {
        "sessionKey": "s1",
        "messages": [entry_json(USER), entry_json(REPLY)],
        "hasMore": True,
    }
    [empty] = blocks(history_event("s1", [], False))
    assert json.loads(empty[1][6:]) == {"sessionKey": "s1", "messages": [], "hasMore": False}


def test_message_events_one_per_entry_in_order() -> None:
    found = blocks(message_events("agent:main:x", [USER, REPLY]))
    assert [block[0] for block in found] == ["event: message", "event: message"]
    assert all(len(block) == 2 for block in found)  # a line break in content stays escaped
    assert [json.loads(block[1][6:]) for block in found] == [
        {"sessionKey": "agent:main:x", "message": entry_json(USER), "messageId": "r1:7",
         "messageSeq": 7},
        {"sessionKey": "agent:main:x", "message": entry_json(REPLY), "messageId": "r1:8",
         "messageSeq": 8},
    ]  # fmt: skip
    assert message_events("k", []) == b""


def test_unicode_and_lone_surrogates_stay_on_one_line() -> None:
    odd = TranscriptEntry(1, {"role": "assistant", "content": "ø\u2028\ud800"}, "r", "complete", 1)
    [block] = blocks(message_events("k", [odd]))
    assert len(block) == 2
    assert json.loads(block[1][6:])["message"]["content"] == "ø\u2028\ud800"


@pytest.mark.parametrize(
    ("accept", "wanted"),
    [
        ("text/event-stream", True),
        ("Text/Event-Stream; charset=utf-8", True),
        ("application/json, text/event-stream;q=0.5", True),
        ("text/event-stream;q=0", False),
        ("text/event-stream; q=0.000", False),
        ("text/event-stream;q=x", False),
        ("*/*", False),
        ("text/*", False),
        ("application/json", False),
        ("", False),
        (None, False),
    ],
)
def test_who_asks_for_the_stream(accept: str | None, wanted: bool) -> None:
    assert wants_event_stream(accept) is wanted


@pytest.mark.parametrize(
    ("raw", "channel"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("webchat", "webchat"),
        (" Slack:C024BE91L ", "Slack:C024BE91L"),
        ("ops.alerts_2-b", "ops.alerts_2-b"),
        ("x" * 64, "x" * 64),
    ],
)
def test_message_channel_accepted(raw: str | None, channel: str | None) -> None:
    assert message_channel(raw) == channel


@pytest.mark.parametrize("raw", ["x" * 65, "web chat", "a/b", "ø", "a\tb", "#general", "a,b"])
def test_message_channel_refused(raw: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        message_channel(raw)
    assert refused.value.param == "x-openclaw-message-channel"
    assert refused.value.message.startswith("Invalid `x-openclaw-message-channel`.")
