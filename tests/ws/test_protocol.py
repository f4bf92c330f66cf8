"""Frames: parsing, encoding, errors, size limits. No sockets."""

from __future__ import annotations

import json

import pytest

from gateway.ws.protocol import (
    FrameError,
    Request,
    WsError,
    close_reason,
    encode,
    error_response,
    event_frame,
    ok_response,
    parse_request,
    too_large,
)


def test_parse_request() -> None:
    text = '{"type":"req","id":"2:x","method":"health"}'
    assert parse_request(text) == Request("2:x", "health", {})
    with_params = parse_request(b'{"type":"req","id":"3","method":"m","params":{"a":1}}')
    assert with_params.params == {"a": 1}
    assert parse_request('{"type":"req","id":"4","method":"m","params":null}').params == {}


@pytest.mark.parametrize(
    ("text", "message", "request_id"),
    [
        ("{nope", "invalid frame: not a JSON document", None),
        ("[1, 2]", "invalid frame: expected a JSON object", None),
        ('{"type":"event","id":"1"}', 'invalid frame: expected type "req"', "1"),
        (
            '{"type":"req","id":7,"method":"m"}',
            "invalid frame: id must be a non-empty string",
            None,
        ),
        (
            '{"type":"req","id":"","method":"m"}',
            "invalid frame: id must be a non-empty string",
            None,
        ),
        (
            '{"type":"req","id":"1","method":""}',
            "invalid frame: method must be a non-empty string",
            "1",
        ),
        (
            '{"type":"req","id":"1","method":"m","params":[1]}',
            "invalid m params: params must be an object",
            "1",
        ),
        (b"\xff\xfe", "invalid frame: not a JSON document", None),
    ],
)
def test_parse_errors(text: str | bytes, message: str, request_id: str | None) -> None:
    with pytest.raises(FrameError) as caught:
        parse_request(text)
    assert caught.value.message == message
    assert caught.value.request_id == request_id
    assert caught.value.code == "INVALID_REQUEST"


def test_response_and_event_frames() -> None:
    assert ok_response("1", {"a": 1}) == {"type": "res", "id": "1", "ok": True, "payload": {"a": 1}}
    error = WsError("UNAVAILABLE", "down", details={"x": 1}, retryable=True, retry_after_ms=5)
    assert error_response("2", error) == {
        "type": "res",
        "id": "2",
        "ok": False,
        "error": {
            "code": "UNAVAILABLE",
            "message": "down",
            "details": {"x": 1},
            "retryable": True,
            "retryAfterMs": 5,
        },
    }
    assert error_response("3", WsError("X", "y"), {"runId": "r"})["payload"] == {"runId": "r"}
    assert event_frame("tick", {"ts": 1}) == {
        "type": "event",
        "event": "tick",
        "payload": {"ts": 1},
    }
    assert event_frame("tick", {}, 4)["seq"] == 4


def test_encode_is_compact_utf8() -> None:
    text = encode(event_frame("chat", {"text": "héllo ✓"}, 1))
    assert " " not in text.replace("héllo ✓", "")
    assert "✓" in text
    assert json.loads(text)["payload"]["text"] == "héllo ✓"


def test_too_large_counts_utf8_bytes() -> None:
    assert not too_large("a" * 10, 10)
    assert too_large("a" * 11, 10)
    assert too_large("é" * 6, 10)  # 12 bytes
    assert not too_large("é" * 5, 10)
    assert too_large(b"x" * 11, 10)
    assert not too_large("x" * 2, 100)


def test_close_reason_fits_a_close_frame() -> None:
    assert close_reason("short") == "short"
    long = close_reason("é" * 100)
    assert len(long.encode()) <= 123
    assert long == "é" * 61
