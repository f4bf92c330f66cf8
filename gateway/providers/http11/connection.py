"""One HTTP/1.1 connection over a trio stream (TCP, or TLS over TCP): requests written as bytes,
responses parsed by ``response.ResponseParser``.

A connection carries one exchange at a time: ``send_request``, ``receive_response``, then
``receive_data`` until it returns ``None``. Bodies may be chunked, sized by ``Content-Length``
or delimited by the connection's close (HTTP/1.0 style); they are decoded by their
``Content-Encoding``. The connection is ``reusable`` only once an exchange ended cleanly on both
sides and the upstream did not ask to close; a body not read to its end, an error or a
cancellation leaves it to be closed.

``close`` is synchronous and immediate: the socket is closed (no TLS close_notify), so the
upstream sees the connection go at once, whatever the phase. Every ``await`` here is one socket
read or write; cancelled, it leaves the connection in an unknown state, to be closed by its owner.
"""

from __future__ import annotations

import select

import trio

from gateway.providers.http11.decoding import ContentDecoder, content_decoder
from gateway.providers.http11.response import ResponseParser
from gateway.providers.http11.routing import PreparedRequest
from gateway.providers.http11.wire import ConnectionBroken, InvalidResponse, ResponseHead

__all__ = ["Connection"]

_RECEIVE_SIZE = 65536
_COALESCE_BODY = 65536  # smaller request bodies go out in one write with the head


class Connection:
    """One open HTTP/1.1 connection (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType) -> None:
        self._stream = stream
        self._socket = sock  # the TCP socket under ``stream``, to close it at once
        self._response = ResponseParser()
        self._decoder: ContentDecoder | None = None
        self._delivered = False  # the current body was handed out to its end
        self._spoiled = False  # a write was refused or an error raised: never reuse

    @property
    def reusable(self) -> bool:
        """Whether the last exchange ended cleanly on both sides and the connection may carry
        another one (the upstream did not ask to close, and sent nothing beyond its answer)."""
        return self._delivered and not self._spoiled and self._response.reusable

    def start_next_cycle(self) -> None:
        """Prepare a ``reusable`` connection for its next exchange."""
        self._response.next_response()
        self._decoder = None
        self._delivered = False

    def looks_alive(self) -> bool:
        """For an idle connection: whether its socket has nothing to read, as it should. A
        readable idle socket means the upstream closed it (or sent bytes nobody asked for)."""
        try:
            poller = select.poll()
            poller.register(self._socket.fileno(), select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        """Close the socket now. Idempotent."""
        self._socket.close()

    async def send_request(self, request: PreparedRequest) -> None:
        """Write the request's head and body.

        A write refused because the upstream closed or reset the connection is not raised here:
        the upstream may have answered before closing (an early error status), and
        ``receive_response`` reports what happened.
        """
        try:
            if len(request.body) <= _COALESCE_BODY:
                await self._stream.send_all(request.head + request.body)
            else:
                await self._stream.send_all(request.head)
                await self._stream.send_all(request.body)
        except trio.BrokenResourceError:
            self._spoiled = True

    async def receive_response(self) -> ResponseHead:
        """Wait for the response head, skipping interim (1xx) responses.

        Raises ``ConnectionBroken`` (``answered`` false if nothing at all arrived) or
        ``InvalidResponse`` (also for a ``Content-Encoding`` that cannot be decoded).
        """
        while (head := self._response.head) is None:
            await self._receive_more()
        try:
            self._decoder = content_decoder(head.headers.get("content-encoding"))
        except InvalidResponse:
            self._spoiled = True
            raise
        return head

    async def receive_data(self) -> bytes | None:
        """The next decoded, non-empty part of the body (what already arrived, joined), or
        ``None`` once the body ended. Raises ``ConnectionBroken`` or ``InvalidResponse``."""
        response = self._response
        while not self._delivered:
            data = response.take_body()
            if not data and not response.ended:
                await self._receive_more()
                continue
            self._delivered = response.ended  # and take_body took all of it
            if self._decoder is not None:
                data = self._decode(self._decoder, data)
            if data:
                return data
        return None

    def _decode(self, decoder: ContentDecoder, data: bytes) -> bytes:
        try:
            return decoder.decode(data) + (decoder.flush() if self._delivered else b"")
        except InvalidResponse:
            self._spoiled = True  # the framing may be fine, the answer is not: do not reuse
            raise

    async def _receive_more(self) -> None:
        try:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
        except trio.BrokenResourceError as exc:
            detail = str(exc.__cause__ or exc)
            message = (
                f"the connection was reset ({detail})" if detail else "the connection was reset"
            )
            raise ConnectionBroken(message, answered=self._response.answered) from None
        try:
            if data:
                self._response.feed(data)
            else:
                self._response.feed_eof()
        except (InvalidResponse, ConnectionBroken):
            self._spoiled = True
            raise
