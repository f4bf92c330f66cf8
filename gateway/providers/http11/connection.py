"""One HTTP/1.1 connection: an h11 state machine over a trio stream (TCP, or TLS over TCP).

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

import h11
import trio

from gateway.providers.http11.decoding import ContentDecoder, content_decoder
from gateway.providers.http11.routing import PreparedRequest
from gateway.providers.http11.wire import (
    ConnectionBroken,
    InvalidResponse,
    ResponseHead,
    response_head,
)

__all__ = ["Connection"]

_RECEIVE_SIZE = 65536
_COALESCE_BODY = 65536  # smaller request bodies go out in one write with the head


class Connection:
    """One open HTTP/1.1 connection (see the module docstring)."""

    def __init__(self, stream: trio.abc.Stream, sock: trio.socket.SocketType) -> None:
        self._stream = stream
        self._socket = sock  # the TCP socket under ``stream``, to close it at once
        self._h11 = h11.Connection(h11.CLIENT)
        self._decoder: ContentDecoder | None = None
        self._answered = False  # some byte of the current response arrived
        self._eof = False
        self._ended = False  # the current response's body ended
        self._spoiled = False  # a write was refused or an error raised: never reuse

    @property
    def reusable(self) -> bool:
        """Whether the last exchange ended cleanly on both sides and the connection may carry
        another one (the upstream did not ask to close, and sent nothing beyond its answer)."""
        h = self._h11
        if self._spoiled or h.our_state is not h11.DONE or h.their_state is not h11.DONE:
            return False
        return not h.trailing_data[0]

    def start_next_cycle(self) -> None:
        """Prepare a ``reusable`` connection for its next exchange."""
        self._h11.start_next_cycle()
        self._decoder = None
        self._answered = self._ended = False

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
        h = self._h11
        head = h.send(request.head)
        body = h.send(h11.Data(data=request.body)) if request.body else b""
        h.send(h11.EndOfMessage())
        try:
            if len(body) <= _COALESCE_BODY:
                await self._stream.send_all(head + body)
            else:
                await self._stream.send_all(head)
                await self._stream.send_all(body)
        except trio.BrokenResourceError:
            self._spoiled = True

    async def receive_response(self) -> ResponseHead:
        """Wait for the response head, skipping interim (1xx) responses.

        Raises ``ConnectionBroken`` (``answered`` false if nothing at all arrived) or
        ``InvalidResponse`` (also for a ``Content-Encoding`` that cannot be decoded).
        """
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                await self._receive_more()
            elif type(event) is h11.Response:
                head = response_head(event)
                try:
                    self._decoder = content_decoder(head.headers.get("content-encoding"))
                except InvalidResponse:
                    self._spoiled = True
                    raise
                return head
            elif type(event) is not h11.InformationalResponse:
                raise InvalidResponse(f"unexpected {type(event).__name__} before a response")

    async def receive_data(self) -> bytes | None:
        """The next decoded, non-empty part of the body (what already arrived, joined), or
        ``None`` once the body ended. Raises ``ConnectionBroken`` or ``InvalidResponse``."""
        while not self._ended:
            parts: list[bytes | bytearray] = []
            while True:
                event = self._next_event()
                if type(event) is h11.Data:
                    parts.append(event.data)
                elif event is h11.NEED_DATA:
                    if parts:
                        break
                    await self._receive_more()
                elif type(event) is h11.EndOfMessage:
                    self._ended = True
                    break
                else:
                    raise InvalidResponse(f"unexpected {type(event).__name__} in a body")
            data = b"".join(parts)
            if self._decoder is not None:
                data = self._decode(self._decoder, data)
            if data:
                return data
        return None

    def _decode(self, decoder: ContentDecoder, data: bytes) -> bytes:
        try:
            return decoder.decode(data) + (decoder.flush() if self._ended else b"")
        except InvalidResponse:
            self._spoiled = True  # the framing may be fine, the answer is not: do not reuse
            raise

    def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            if not self._eof:
                raise InvalidResponse(str(exc)) from None
            if self._answered:
                raise ConnectionBroken(
                    f"the connection closed in the middle of the response ({exc})", answered=True
                ) from None
            raise ConnectionBroken(
                "the connection closed without a response", answered=False
            ) from None

    async def _receive_more(self) -> None:
        try:
            data = await self._stream.receive_some(_RECEIVE_SIZE)
        except trio.BrokenResourceError as exc:
            detail = str(exc.__cause__ or exc)
            message = (
                f"the connection was reset ({detail})" if detail else "the connection was reset"
            )
            raise ConnectionBroken(message, answered=self._answered) from None
        if data:
            self._answered = True
        else:
            self._eof = True
        self._h11.receive_data(bytes(data))  # a no-op for bytes, what sockets return
