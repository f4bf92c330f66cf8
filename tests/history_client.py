"""A live history client for the tests: ``GET /sessions/<key>/history`` with ``Accept:
text/event-stream`` over a plain trio socket (h11 for the HTTP framing, so the connection
closes exactly when the test leaves), read block by block (a block is everything up to a
blank line), asserting the framing: every event block is exactly ``event:`` and ``data:``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import h11
import trio


@dataclass(frozen=True)
class Block:
    lines: list[str]

    @property
    def event(self) -> str | None:
        if len(self.lines) == 2 and self.lines[0].startswith("event: "):
            assert self.lines[1].startswith("data: "), self.lines
            return self.lines[0][len("event: ") :]
        return None

    @property
    def data(self) -> Any:
        assert self.event is not None, self.lines
        return json.loads(self.lines[1][len("data: ") :])


class LiveHistory:
    def __init__(self, stream: trio.SocketStream, connection: h11.Connection) -> None:
        self._stream = stream
        self._connection = connection
        self._buffer = b""
        self._ended = False
        self.keepalives = 0

    async def _next_event(self) -> h11.Event:
        while True:
            event = self._connection.next_event()
            if event is h11.NEED_DATA:
                self._connection.receive_data(await self._stream.receive_some(65536))
                continue
            assert isinstance(event, h11.Event), event  # never PAUSED: one request
            return event

    async def block(self) -> Block | None:
        """The next block; ``None`` once the response has ended (cleanly)."""
        while b"\n\n" not in self._buffer:
            if self._ended:
                assert self._buffer == b"", self._buffer
                return None
            event = await self._next_event()
            if isinstance(event, h11.Data):
                self._buffer += bytes(event.data)
            else:
                assert isinstance(event, h11.EndOfMessage), event
                self._ended = True
        head, self._buffer = self._buffer.split(b"\n\n", 1)
        return Block(head.decode().split("\n"))

    async def event(self) -> Block:
        """The next event block, counting the keepalive comments on the way; any other block
        is a framing error."""
        while True:
            block = await self.block()
            assert block is not None, "the stream ended"
            if block.lines == [": keepalive"]:
                self.keepalives += 1
                continue
            assert block.event in ("history", "message"), block.lines
            return block

    async def messages(self, count: int) -> list[dict[str, Any]]:
        """The data of the next ``count`` ``message`` events."""
        found = []
        for _ in range(count):
            block = await self.event()
            assert block.event == "message", block.lines
            found.append(block.data)
        return found


@asynccontextmanager
async def live_history(url: str, key: str, token: str, **params: Any) -> AsyncIterator[LiveHistory]:
    """An open live history whose ``retry`` block has been checked: the next event is the
    snapshot. ``AssertionError`` (with the status and body) if the answer is not a stream.
    Leaving closes the connection."""
    parts = urlsplit(url)
    target = f"/sessions/{key}/history" + (f"?{urlencode(params)}" if params else "")
    connection = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    async with stream:
        request = h11.Request(
            method="GET",
            target=target,
            headers=[
                ("Host", parts.netloc),
                ("Authorization", f"Bearer {token}"),
                ("Accept", "text/event-stream"),
            ],
        )
        await stream.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
        live = LiveHistory(stream, connection)
        response = await live._next_event()
        assert isinstance(response, h11.Response), response
        headers = {name.decode(): value.decode() for name, value in response.headers}
        if response.status_code != 200:
            body = b""
            while not isinstance(event := await live._next_event(), h11.EndOfMessage):
                assert isinstance(event, h11.Data)
                body += bytes(event.data)
            raise AssertionError((response.status_code, body))
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert await live.block() == Block(["retry: 1000"])
        yield live
