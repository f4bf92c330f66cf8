"""The response parser without sockets: framings, interim responses, what counts as reusable,
split input, and broken or invalid responses."""

from __future__ import annotations

import pytest

from gateway.providers.http11 import ConnectionBroken, InvalidResponse
from gateway.providers.http11.response import ResponseParser

CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: t\r\n\r\n"
)
SIZED = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Id: a\r\nx-id: b\r\n\r\nhello world"


def parse(*pieces: bytes, eof: bool = False) -> tuple[ResponseParser, bytes]:
    """Feed ``pieces`` (then the end of the connection, with ``eof``); returns the parser and
    the body it delivered."""
    parser = ResponseParser()
    body = b""
    for piece in pieces:
        parser.feed(piece)
        body += parser.take_body()
    if eof:
        parser.feed_eof()
        body += parser.take_body()
    return parser, body


@pytest.mark.parametrize("response", [CHUNKED, SIZED], ids=["chunked", "content-length"])
def test_framed_bodies_at_every_split(response: bytes) -> None:
    for cut in range(len(response) + 1):
        parser, body = parse(response[:cut], response[cut:])
        assert parser.ended and parser.reusable, cut
        assert body == b"hello world", cut
        assert parser.head is not None and parser.head.status == 200


def test_head_fields_lowercased_and_joined_trailers_ignored() -> None:
    parser, _ = parse(SIZED)
    assert parser.head is not None
    assert parser.head.headers == {"content-length": "11", "x-id": "a, b"}
    parser, _ = parse(CHUNKED)
    assert parser.head is not None
    assert "x-trailer" not in parser.head.headers


def test_the_head_comes_before_the_body_ends() -> None:
    parser = ResponseParser()
    parser.feed(CHUNKED[: CHUNKED.index(b"\r\n\r\n") + 4])
    assert parser.head is not None and parser.head.content_type == "text/event-stream"
    assert not parser.ended and not parser.reusable
    assert parser.take_body() == b""


def test_interim_responses_are_skipped() -> None:
    parser, body = parse(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nlink: x\r\n\r\n" + SIZED
    )
    assert parser.head is not None and parser.head.status == 200
    assert "link" not in parser.head.headers
    assert body == b"hello world" and parser.reusable


def test_responses_one_after_the_other() -> None:
    parser, _ = parse(CHUNKED)
    parser.next_response()
    assert parser.head is None and not parser.ended and not parser.answered
    parser.feed(SIZED)
    assert parser.take_body() == b"hello world" and parser.reusable
    assert parser.head is not None
    assert parser.head.headers == {"content-length": "11", "x-id": "a, b"}  # no trailer


def test_a_close_after_the_response_makes_it_unreusable() -> None:
    parser, _ = parse(SIZED, eof=True)
    assert parser.ended and not parser.reusable


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.0 200 OK\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello world",
    ],
    ids=["http-1.0", "connection-close"],
)
def test_close_delimited_body_ends_with_the_connection(response: bytes) -> None:
    parser, body = parse(response)
    assert not parser.ended
    parser.feed_eof()
    assert parser.ended and not parser.reusable
    assert body + parser.take_body() == b"hello world"


def test_no_body_statuses_end_at_the_head() -> None:
    for status in (b"204 No Content", b"304 Not Modified"):
        parser, body = parse(b"HTTP/1.1 " + status + b"\r\n\r\n")
        assert parser.ended and parser.reusable and body == b""


def test_connection_close_with_a_length_is_not_reusable() -> None:
    parser, body = parse(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
    assert parser.ended and body == b"ok" and not parser.reusable


@pytest.mark.parametrize("beyond", [b"HTTP/1.1 200 OK\r\n", b"garbage"], ids=["response", "junk"])
def test_bytes_beyond_the_response_make_it_unreusable(beyond: bytes) -> None:
    parser, body = parse(SIZED + beyond)
    assert parser.ended and body == b"hello world"
    assert not parser.reusable


def test_bare_lf_heads_are_read() -> None:
    parser, body = parse(b"HTTP/1.1 200 OK\ncontent-length: 2\n\nok")
    assert parser.reusable and body == b"ok"


OK = b"HTTP/1.1 200 OK\r\n"
INVALID = {
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "two-lengths": OK + b"content-length: 1\r\ncontent-length: 2\r\n\r\nok",
    "length-and-chunked": OK + b"content-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
    "unknown-transfer-coding": OK + b"transfer-encoding: gzip\r\n\r\nabc",
    "coding-before-chunked": OK + b"transfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "bad-chunk-size": OK + b"transfer-encoding: chunked\r\n\r\nzz\r\n",
    "bad-header-value": OK + b"x: a\x00b\r\ncontent-length: 0\r\n\r\n",
    "switching-protocols": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n",
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_responses(name: str) -> None:
    with pytest.raises(InvalidResponse):
        parse(INVALID[name])


def test_an_endless_head_or_trailer_is_refused() -> None:
    parser = ResponseParser()
    parser.feed(OK + b"x-long: ")
    with pytest.raises(InvalidResponse, match="over 65536 bytes"):
        for _ in range(20):
            parser.feed(b"a" * 8192)
    parser, _ = parse(OK + b"transfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-t: ")
    with pytest.raises(InvalidResponse, match="over 65536 bytes"):
        for _ in range(20):
            parser.feed(b"a" * 8192)


def test_a_long_body_is_progress() -> None:
    parser = ResponseParser()
    parser.feed(OK + b"content-length: 1000000\r\n\r\n")
    for _ in range(30):
        parser.feed(b"a" * 32768)
    assert len(parser.take_body()) == 30 * 32768


@pytest.mark.parametrize(
    ("pieces", "answered"),
    [
        ((), False),
        ((OK + b"content-le",), True),
        ((OK + b"content-length: 50\r\n\r\nshort",), True),
        ((OK + b"transfer-encoding: chunked\r\n\r\n5\r\nhel",), True),
    ],
    ids=["nothing", "cut-head", "cut-sized-body", "cut-chunked-body"],
)
def test_a_close_before_the_end_is_a_broken_connection(
    pieces: tuple[bytes, ...], answered: bool
) -> None:
    with pytest.raises(ConnectionBroken) as caught:
        parse(*pieces, eof=True)
    assert caught.value.answered is answered
