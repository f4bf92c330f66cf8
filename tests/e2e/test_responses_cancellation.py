"""A ``/v1/responses`` client that goes away, in any phase, closes the upstream at once and
records the turn as aborted, exactly as for chat completions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.harness import Server, start_server, wait_for
from tests.memory_store import MemoryResponses, MemoryStore
from tests.rawhttp import open_request, read_until

LIMIT = 0.1


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream(Script(tokens=3)) as upstream:
        yield upstream


async def serve(nursery: trio.Nursery, up: FakeUpstream, **extra: Any) -> Server:
    config = {
        "gateway": {"http": {"endpoints": {"responses": {"enabled": True}}}},
        "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
        "agents": {"defaults": {"model": "fake/m", **extra}},
    }
    return await start_server(nursery, config, store=MemoryStore(), responses=MemoryResponses())


async def closed_within(up: FakeUpstream, index: int, stream: trio.SocketStream) -> float:
    closed_at = time.monotonic()
    await stream.aclose()
    with trio.fail_after(2):
        record = await up.wait_closed(index)
    assert record.closed_at is not None
    return record.closed_at - closed_at


async def nothing_left(server: Server) -> None:
    await wait_for(lambda: server.gateway.runtime.statistics().active_runs == 0)
    stats = server.gateway.runtime.admission.statistics()
    assert (stats.slots_held, stats.sessions_held, stats.slots_waiting) == (0, 0, 0)


@pytest.mark.parametrize("stream", [True, False])
async def test_before_the_first_token(
    nursery: trio.Nursery, up: FakeUpstream, stream: bool
) -> None:
    server = await serve(nursery, up)
    up.enqueue(Script(fault="hang_before_headers"))
    client = await open_request(
        server.url, {"input": "x", "stream": stream, "user": "ann"}, path="/v1/responses"
    )
    await up.wait_request(0)
    assert await closed_within(up, 0, client) < LIMIT
    await nothing_left(server)
    transcripts = server.gateway.runtime.transcripts
    assert isinstance(transcripts, MemoryStore)
    with trio.fail_after(2):
        await transcripts.appended.wait()
    [(messages, status)] = transcripts.turns["agent:main:openresponses-user:ann"]
    assert status == "aborted" and messages == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize("stream", [True, False])
async def test_mid_reply(nursery: trio.Nursery, up: FakeUpstream, stream: bool) -> None:
    server = await serve(nursery, up)
    up.enqueue(Script(tokens=100_000, token_delay=0.01))
    client = await open_request(server.url, {"input": "x", "stream": stream}, path="/v1/responses")
    if stream:
        await read_until(client, b"response.output_text.delta", limit=1 << 22)
    else:
        await (await up.wait_request(0)).wait_for("first_byte")
    assert await closed_within(up, 0, client) < LIMIT
    await nothing_left(server)
    if stream:
        # The client saw the response start: it is stored as it ended.
        responses = server.gateway.routes.responses.store
        assert isinstance(responses, MemoryResponses)
        await wait_for(lambda: len(responses.stored) == 1)
        [(stored, _)] = responses.stored.values()
        assert stored.response["status"] == "cancelled"


async def test_while_queued(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await serve(nursery, up, maxConcurrent=1)
    up.enqueue(Script(fault="hang_before_headers"))
    holder = await open_request(server.url, {"input": "a", "stream": True}, path="/v1/responses")
    await up.wait_request(0)
    queued = await open_request(server.url, {"input": "b", "stream": True}, path="/v1/responses")
    runtime = server.gateway.runtime
    await wait_for(lambda: runtime.statistics().queued_runs == 1)
    await queued.aclose()
    await wait_for(lambda: runtime.statistics().queued_runs == 0)
    assert len(up.requests) == 1  # the queued one never reached the upstream
    assert await closed_within(up, 0, holder) < LIMIT
    await nothing_left(server)
