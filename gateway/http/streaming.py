"""The SSE response: drains a run's event channel into ``text/event-stream`` bytes.

Events already waiting in the channel are coalesced into one write (one ASGI send per batch,
not per token). While the run is silent (queued, slow upstream) a ``: ping`` comment goes out
every heartbeat interval. The writer owns no task: the run lives in the request nursery, which
is cancelled when the client goes away.
"""

from __future__ import annotations

import trio

from gateway.agents.events import Finish, RunEvent, RunFailed, Usage
from gateway.http.exchange import Exchange
from gateway.sse import DONE, PING, ChunkEncoder

# At most this many queued events go into one write, so one write stays small.
_MAX_BATCH = 256


class SSEBody:
    """Streams ``receive`` as chat completion chunks: ``write_to`` an exchange whose response
    has started, or iterate it (each item one write; the last one ends the stream).

    ``first`` is an event already taken from the channel (the one the headers waited for).
    """

    def __init__(
        self,
        encoder: ChunkEncoder,
        receive: trio.MemoryReceiveChannel[RunEvent],
        *,
        first: RunEvent | None,
        include_usage: bool,
        heartbeat: float,
    ) -> None:
        self._encoder = encoder
        self._receive = receive
        self._pending: list[RunEvent] = [first] if first is not None else []
        self._include_usage = include_usage
        self._heartbeat = heartbeat
        self._usage: Usage | None = None
        self._failed = False
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
        if not self._started:
            self._started = True
            out.append(self._encoder.role())
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
            out.append(self._encode(event))
        if closed:
            out.append(self._tail())
            self._done = True
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

    def _encode(self, event: RunEvent) -> bytes:
        kind = type(event)
        if kind is Usage:
            self._usage = event  # type: ignore[assignment]
            return b""
        if kind is RunFailed:
            self._failed = True
        elif kind is Finish and self._failed:
            return b""
        return self._encoder.encode(event)

    def _tail(self) -> bytes:
        if self._include_usage and not self._failed:
            usage = self._usage or Usage(0, 0)
            return self._encoder.usage(usage) + DONE
        return DONE
