"""The SSE response: drains a run's event channel into ``text/event-stream`` bytes, for any API
shape (``StreamEncoder``: chat completion chunks, Responses events).

Events already waiting in the channel are coalesced into one write (one ASGI send per batch,
not per token). While the run is silent (queued, slow upstream) a ``: ping`` comment goes out
every heartbeat interval. The writer owns no task: the run lives in the request nursery, which
is cancelled when the client goes away.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from gateway.agents.events import RunEvent, RunFailed
from gateway.errors import GatewayError
from gateway.http.exchange import Exchange
from gateway.sse import PING

# The head of every SSE response.
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# At most this many queued events go into one write, so one write stays small.
_MAX_BATCH = 256


class StreamEncoder(Protocol):
    """One stream's encoding: ``head`` opens it, ``encode`` each event, ``tail`` when the
    channel ended; ``finished`` once the stream's last event has been encoded."""

    @property
    def finished(self) -> bool: ...

    def head(self) -> bytes: ...

    def encode(self, event: RunEvent) -> bytes: ...

    def tail(self) -> bytes: ...


NO_REPLY = "The run ended without a reply."


async def first_event(
    receive: trio.MemoryReceiveChannel[RunEvent], heartbeat: float
) -> RunEvent | None:
    """The run's first event, for the response headers to wait on; ``None`` when none came
    within ``heartbeat`` (the stream starts with a ping). Raises the ``GatewayError`` of a run
    that failed first or ended without an event: a real HTTP status, nothing sent yet."""
    with trio.move_on_after(heartbeat):
        try:
            first = await receive.receive()
        except trio.EndOfChannel:
            raise GatewayError(NO_REPLY) from None
        if isinstance(first, RunFailed):
            raise first.error
        return first
    return None


class SSEBody:
    """Streams ``receive`` through ``encoder``: ``write_to`` an exchange whose response has
    started, or iterate it (each item one write; the last one ends the stream).

    ``first`` is an event already taken from the channel (the one the headers waited for).
    ``before_end`` is awaited once, before the write that finishes the stream (a stored response
    is committed before the client hears it is complete).
    """

    def __init__(
        self,
        encoder: StreamEncoder,
        receive: trio.MemoryReceiveChannel[RunEvent],
        *,
        first: RunEvent | None,
        heartbeat: float,
        before_end: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._encoder = encoder
        self._receive = receive
        self._pending: list[RunEvent] = [first] if first is not None else []
        self._heartbeat = heartbeat
        self._before_end = before_end
        self._started = False
        self._done = False

    async def write_to(self, exchange: Exchange) -> None:
        """Write the whole stream, then end the response. Closing our side of the channel on
        the way out makes a still-running producer stop at its next send."""
        with self._receive:
            async for chunk in self:
                if self._done:
                    await exchange.finish(chunk)
                else:
                    await exchange.write(chunk)

    def __aiter__(self) -> SSEBody:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        out: list[bytes] = []
        encoder = self._encoder
        if not self._started:
            self._started = True
            out.append(encoder.head())
        events = self._pending
        self._pending = []
        closed = self._drain(events)
        if not events and not closed and not out:
            with trio.move_on_after(self._heartbeat):
                try:
                    events.append(await self._receive.receive())
                except trio.EndOfChannel:
                    closed = True
            if not events and not closed:
                return PING
            if not closed:
                closed = self._drain(events)
        for event in events:
            out.append(encoder.encode(event))
        if closed:
            out.append(encoder.tail())
            self._done = True
        if encoder.finished and self._before_end is not None:
            before_end, self._before_end = self._before_end, None
            await before_end()
        return b"".join(out)

    def _drain(self, events: list[RunEvent]) -> bool:
        """Move what is already queued into ``events``; ``True`` once the channel has ended."""
        receive_nowait = self._receive.receive_nowait
        while len(events) < _MAX_BATCH:
            try:
                events.append(receive_nowait())
            except trio.WouldBlock:
                return False
            except trio.EndOfChannel:
                return True
        return False
