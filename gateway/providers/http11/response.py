"""Parsing the responses that arrive on one connection: llhttp's C parser (through ``httptools``)
and the rules this client adds to it. Pure: fed bytes, no I/O.

What llhttp does: the status line and headers (CRLF line ends, or bare LF as h11 also accepted),
bodies sized by ``Content-Length`` or chunked (extensions and trailers skipped), interim 1xx
responses, and ``should_keep_alive`` from the HTTP version and ``Connection``. What it leaves to
its caller, done here:

- the end of a body delimited by the connection's close (``feed_eof``);
- ``Transfer-Encoding`` other than ``chunked`` is refused (llhttp would read such a body until
  the close), and so is a ``101`` the client never asked for;
- bytes beyond the response (the start of another one, or garbage) are not parsed but make the
  connection unfit for reuse;
- at most 64 KiB may arrive without the parser making progress (a head, chunk headers or
  trailers), so a broken upstream cannot make it buffer without bound.

Errors are ``InvalidResponse`` (what arrived is not a usable HTTP/1.1 response) and
``ConnectionBroken`` (the connection closed before the response ended).
"""

from __future__ import annotations

import httptools

from gateway.providers.http11.wire import (
    ConnectionBroken,
    InvalidResponse,
    ResponseHead,
    response_head,
)

__all__ = ["ResponseParser"]

_STALL_LIMIT = 65536
_NO_BODY = frozenset({204, 304})


class _Beyond(Exception):
    """Stops the parser where a next response would start."""


class ResponseParser:
    """The responses of one connection, one after the other (see the module docstring)."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
        self.answered = False  # some byte of the current response arrived
        self.head: ResponseHead | None = None  # the current response's, once complete
        self.ended = False  # the current response ended
        self._fields: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._interim = False  # the message being parsed is a 1xx response
        self._close_delimited = False
        self._keep_alive = False
        self._beyond = False  # bytes arrived beyond the current response
        self._invalid: str | None = None
        self._progress = False  # the last ``feed`` completed a head, some body or the end
        self._stalled = 0  # bytes fed since the parser last made progress

    @property
    def reusable(self) -> bool:
        """Whether the current response ended and the connection may carry another exchange:
        the upstream did not ask to close and sent nothing beyond its response."""
        return self.ended and self._keep_alive and not self._beyond

    def next_response(self) -> None:
        """Start on the next response, once a ``reusable`` one was read."""
        self.answered = self.ended = self._keep_alive = False
        self.head = None

    def feed(self, data: bytes | bytearray) -> None:
        """Parse the next bytes the upstream sent. Raises ``InvalidResponse``."""
        self.answered = True
        self._progress = False
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self.ended or self._invalid is not None:
                raise InvalidResponse(self._invalid or str(exc)) from None
            self._beyond = True  # what follows the response is not ours to read
        if self._invalid is not None:
            raise InvalidResponse(self._invalid)
        if self._progress:
            self._stalled = 0
            return
        self._stalled += len(data)
        if self._stalled > _STALL_LIMIT:
            raise InvalidResponse(f"over {_STALL_LIMIT} bytes of response head or framing")

    def feed_eof(self) -> None:
        """The upstream closed the connection: that ends a body delimited by the close;
        anywhere else in a response it is a ``ConnectionBroken``."""
        if self.ended or (self.head is not None and self._close_delimited):
            self.ended = True
            self._keep_alive = False
            return
        if not self.answered:
            raise ConnectionBroken("the connection closed without a response", answered=False)
        raise ConnectionBroken("the connection closed in the middle of the response", answered=True)

    def take_body(self) -> bytes:
        """The body bytes parsed since the last call (maybe none)."""
        body = self._body
        if not body:
            return b""
        self._body = []
        return body[0] if len(body) == 1 else b"".join(body)

    # llhttp's callbacks, called from inside ``feed_data``.

    def on_message_begin(self) -> None:
        if self.ended:
            raise _Beyond

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head is None:  # not a trailer
            self._fields.append((name, value))

    def on_headers_complete(self) -> None:
        self._progress = True
        status = self._parser.get_status_code()
        fields, self._fields = self._fields, []
        if status < 200:
            self._interim = True
            if status == 101:
                self._invalid = "a 101 Switching Protocols the client did not ask for"
            return
        head = response_head(status, fields)
        coding = head.headers.get("transfer-encoding")
        if coding is not None and coding.lower() != "chunked":
            self._invalid = f"unsupported Transfer-Encoding {coding!r}"
        self._close_delimited = (
            coding is None and "content-length" not in head.headers and status not in _NO_BODY
        )
        self.head = head

    def on_body(self, body: bytes) -> None:
        self._progress = True
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._progress = True
        if self._interim:
            self._interim = False
            return
        self.ended = True
        self._keep_alive = self._parser.should_keep_alive()
