"""The SSE response body, driven through a memory channel (no sockets)."""

from __future__ import annotations

import contextlib

import trio
import trio.testing

from gateway.agents.events import Finish, RunEvent, RunFailed, TextDelta, Usage
from gateway.errors import GatewayError
from gateway.http.streaming import SSEBody
from gateway.sse import DONE, PING, ChatStream, ChunkEncoder

ENC = ChunkEncoder("id", 1, "m")


class Recorder:
    """The part of an ``Exchange`` the body writes to: each write, and whether it ended."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.finished = False

    async def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def finish(self, data: bytes = b"") -> None:
        self.writes.append(data)
        self.finished = True


def body_for(
    receive: trio.MemoryReceiveChannel[RunEvent], first: RunEvent | None = None, usage: bool = True
) -> SSEBody:
    return SSEBody(ChatStream(ENC, include_usage=usage), receive, first=first, heartbeat=1.0)


async def test_coalesces_queued_events_into_one_write() -> None:
    send, receive = trio.open_memory_channel[RunEvent](10)
    for event in (TextDelta("a"), TextDelta("b"), Usage(1, 2), Finish("stop")):
        send.send_nowait(event)
    send.close()
    out = Recorder()
    await body_for(receive, first=TextDelta("0")).write_to(out)  # type: ignore[arg-type]
    assert out.finished
    assert out.writes == [
        ENC.role()
        + ENC.encode(TextDelta("0"))
        + ENC.encode(TextDelta("a"))
        + ENC.encode(TextDelta("b"))
        + ENC.encode(Finish("stop"))
        + ENC.usage(Usage(1, 2))
        + DONE
    ]


async def test_role_chunk_goes_out_at_once_then_pings(autojump_clock: trio.abc.Clock) -> None:
    send, receive = trio.open_memory_channel[RunEvent](10)
    body = body_for(receive)
    assert await body.__anext__() == ENC.role()
    start = trio.current_time()
    assert await body.__anext__() == PING
    assert trio.current_time() - start == 1.0
    send.send_nowait(TextDelta("x"))
    assert await body.__anext__() == ENC.encode(TextDelta("x"))
    await send.aclose()
    assert await body.__anext__() == ENC.usage(Usage(0, 0)) + DONE


async def test_error_ends_the_stream_without_usage_or_finish() -> None:
    send, receive = trio.open_memory_channel[RunEvent](10)
    error = GatewayError("gone", status=502)
    send.send_nowait(TextDelta("x"))
    send.send_nowait(RunFailed(error))
    send.close()
    writes = [chunk async for chunk in body_for(receive)]
    assert b"".join(writes) == ENC.role() + ENC.encode(TextDelta("x")) + ENC.error(error) + DONE


async def test_a_writer_that_stops_closes_the_channel_so_the_producer_stops() -> None:
    send, receive = trio.open_memory_channel[RunEvent](0)

    class Gone(Recorder):
        async def write(self, data: bytes) -> None:
            raise trio.BrokenResourceError  # the client went away mid-stream

    with contextlib.suppress(trio.BrokenResourceError):
        await body_for(receive).write_to(Gone())  # type: ignore[arg-type]
    try:
        send.send_nowait(TextDelta("x"))
    except trio.BrokenResourceError:
        return
    raise AssertionError("the producer was not told")
