from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from gateway.providers.upstream_errors import (
    error_from_event,
    error_from_status,
    extract_message,
    kind_for_status,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (404, "bad_request"),
        (413, "bad_request"),
        (422, "bad_request"),
        (401, "auth"),
        (403, "auth"),
        (408, "timeout"),
        (429, "rate_limited"),
        (402, "upstream"),
        (409, "upstream"),
        (500, "upstream"),
        (502, "upstream"),
        (503, "upstream"),
        (529, "upstream"),
    ],
)
def test_kind_for_status(status: int, kind: str) -> None:
    assert kind_for_status(status) == kind


def openai_error(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "x", "param": None}}).encode()


def test_bad_request_keeps_the_upstream_message_verbatim() -> None:
    error = error_from_status("p", 400, body=openai_error("max_tokens is too large"))
    assert (error.kind, error.status, error.message) == (
        "bad_request",
        400,
        "max_tokens is too large",
    )
    assert error.provider == "p"
    assert error.upstream_status == 400
    assert error.type == "invalid_request_error"


def test_bad_request_without_a_message_names_the_status() -> None:
    error = error_from_status("p", 422, body=b"")
    assert error.message == "Provider 'p' answered HTTP 422: empty body"


@pytest.mark.parametrize("status", [401, 403])
def test_auth_names_the_provider_and_hides_the_upstream_message(status: int) -> None:
    error = error_from_status("acme", status, body=openai_error("Incorrect API key sk-abc***xyz"))
    assert (error.kind, error.status) == ("auth", 502)
    assert "acme" in error.message
    assert "sk-abc" not in error.message
    assert str(status) in error.message


def test_rate_limited_keeps_retry_after() -> None:
    error = error_from_status("p", 429, body=openai_error("slow down"), retry_after="7")
    assert (error.kind, error.status, error.retry_after) == ("rate_limited", 429, 7.0)
    assert "slow down" in error.message
    assert error.headers() == {"Retry-After": "7"}


def test_retry_after_only_for_rate_limits() -> None:
    assert error_from_status("p", 503, body=b"", retry_after="7").retry_after is None


def test_html_error_page_is_never_quoted() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    error = error_from_status("p", 502, body=page, content_type="text/html; charset=utf-8")
    assert (error.kind, error.status) == ("upstream", 502)
    assert error.message == "Provider 'p' answered HTTP 502: unreadable error body (text/html)"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (openai_error("openai style"), "application/json", "openai style"),
        (
            b'{"type":"error","error":{"type":"invalid_request_error","message":"anthropic"}}',
            "application/json",
            "anthropic",
        ),
        (b'{"error": "bare string"}', "application/json", "bare string"),
        (b'{"message": "top level"}', "application/json", "top level"),
        (b'{"detail": "fastapi"}', "application/json", "fastapi"),
        (b'{"detail": [{"loc": ["body"], "msg": "field required"}]}', "", "field required"),
        (b"Bad Gateway\nmore", "text/plain", "Bad Gateway"),
        (b"<!doctype html><p>x</p>", "", None),
        (b'{"error": {"code": 5}}', "application/json", None),
        (b"[1, 2]", "application/json", None),
        (b"  ", "text/plain", None),
        (b"\xff\xfe garbage", "application/octet-stream", "\ufffd\ufffd garbage"),
    ],
)
def test_extract_message(body: bytes, content_type: str, message: str | None) -> None:
    assert extract_message(body, content_type) == message


def test_long_messages_are_capped() -> None:
    error = error_from_status("p", 400, body=openai_error("x" * 5000))
    assert len(error.message) == 500


def test_parse_retry_after() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None, "2500") == 2.5
    assert parse_retry_after("soon", "100") == 0.1
    assert parse_retry_after("-1") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None, "x") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=100), usegmt=True)
    seconds = parse_retry_after(future)
    assert seconds is not None and 95 <= seconds <= 100


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"type": "rate_limit_error", "message": "m"}, "rate_limited"),
        ({"code": "rate_limit_exceeded", "message": "m"}, "rate_limited"),
        ({"type": "overloaded_error", "message": "m"}, "upstream"),
        ({"type": "invalid_request_error", "message": "m"}, "bad_request"),
        ({"code": "context_length_exceeded", "message": "m"}, "bad_request"),
        ({"type": "authentication_error", "message": "m"}, "auth"),
        ({"code": 502, "message": "m"}, "upstream"),
        ({"code": "429", "message": "m"}, "rate_limited"),
        ({"status": 400, "message": "m"}, "bad_request"),
        ({"code": True, "message": "m"}, "upstream"),
        ({"type": "server_error"}, "upstream"),
        ("just a string", "upstream"),
        (None, "upstream"),
    ],
)
def test_error_from_event_kinds(error: object, kind: str) -> None:
    assert error_from_event("p", error).kind == kind


def test_error_from_event_messages() -> None:
    assert (
        error_from_event("p", {"type": "invalid_request_error", "message": "bad"}).message == "bad"
    )
    upstream = error_from_event("p", {"type": "server_error", "message": "boom"})
    assert upstream.message == "Provider 'p' reported an error: boom"
    assert upstream.provider == "p"
    assert error_from_event("p", None).message == "Provider 'p' reported an error: no message"
