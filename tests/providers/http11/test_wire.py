"""URLs, request heads and response heads, without sockets."""

from __future__ import annotations

import h11
import pytest

from gateway.providers.http11.wire import (
    InvalidRequest,
    Origin,
    Target,
    parse_url,
    request_fields,
    request_head,
    response_head,
)
from tests.providers.http11.support import parse_head


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("http://api.example/v1", Target(Origin("http", "api.example", 80), "/v1")),
        ("https://api.example", Target(Origin("https", "api.example", 443), "/")),
        ("HTTPS://API.Example:8443/a?b#f", Target(Origin("https", "api.example", 8443), "/a?b")),
        ("http://[::1]:9000/v1/", Target(Origin("http", "::1", 9000), "/v1/")),
        ("http://bücher.example/x", Target(Origin("http", "xn--bcher-kva.example", 80), "/x")),
        ("http://h/a b/%41?q=ü", Target(Origin("http", "h", 80), "/a%20b/%41?q=%C3%BC")),
    ],
)  # fmt: skip
def test_parse_url(url: str, target: Target) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.invalid", "the scheme must be http or https"),
        ("api.example/v1", "the scheme must be http or https"),
        ("http:///v1", "no host"),
        ("http://h:99999/", "out of range"),
        ("http://h:port/", "invalid URL"),
    ],
)
def test_unusable_urls(url: str, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        parse_url(url)


def test_authority_and_host_header() -> None:
    assert Origin("https", "a.example", 443).host_header == "a.example"
    assert Origin("https", "a.example", 8443).host_header == "a.example:8443"
    assert Origin("http", "::1", 80).host_header == "[::1]"
    assert Origin("http", "::1", 8080).authority == "[::1]:8080"
    assert Target(Origin("http", "::1", 8080), "/v1?x").absolute == "http://[::1]:8080/v1?x"


def fields(request: h11.Request) -> list[tuple[str, str]]:
    return [(name.decode(), value.decode()) for name, value in request.headers.raw_items()]


def complete(head: bytes, content_length: int) -> h11.Request:
    """``head`` finished as ``RequestTemplate.prepare`` finishes it, read back by h11."""
    return parse_head(head + b"%d\r\n\r\n" % content_length)


def test_request_head_merges_headers_host_first() -> None:
    merged = request_fields(
        "api.example",
        [
            {"User-Agent": "gw", "Accept": "*/*"},
            {"accept": "text/event-stream", "Authorization": "Bearer k"},
        ],
    )
    head = complete(request_head("POST", "/v1/x", merged), 5)
    assert (head.method, head.target) == (b"POST", b"/v1/x")
    assert fields(head) == [
        ("Host", "api.example"),
        ("Accept-Encoding", "identity"),
        ("User-Agent", "gw"),
        ("accept", "text/event-stream"),
        ("Authorization", "Bearer k"),
        ("Content-Length", "5"),
    ]


def test_callers_cannot_set_framing_or_connection_headers() -> None:
    merged = request_fields(
        "h",
        [
            {
                "Content-Length": "999",
                "Transfer-Encoding": "chunked",
                "Connection": "close",
                "Keep-Alive": "timeout=1",
                "Host": "other.example",
                "Accept-Encoding": "gzip",
            }
        ],
    )
    head = complete(request_head("POST", "/", merged), 2)
    assert fields(head) == [
        ("Host", "other.example"),
        ("Accept-Encoding", "gzip"),
        ("Content-Length", "2"),
    ]


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nInjected: yes"}, {"Bad Name": "x"}, {"X-Nul": "a\x00b"}],
)
def test_headers_that_cannot_be_sent(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidRequest, match="invalid request header"):
        request_head("POST", "/", request_fields("h", [headers]))


def test_request_head_bytes() -> None:
    head = request_head("POST", "/v1/x", [("Host", "h:1"), ("X-A", "b")])
    assert head == b"POST /v1/x HTTP/1.1\r\nHost: h:1\r\nX-A: b\r\nContent-Length: "


def test_response_head_lowercases_and_joins_repeated_headers() -> None:
    head = response_head(
        429,
        [
            (b"Content-Type", b"application/json"),
            (b"Retry-After", b"3 "),
            (b"Vary", b"a"),
            (b"vary", b"b"),
        ],
    )
    assert head.status == 429
    assert head.content_type == "application/json"
    assert head.headers["retry-after"] == "3"
    assert head.headers["vary"] == "a, b"
    assert response_head(204, []).content_type == ""
