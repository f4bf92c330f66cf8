"""Clients that read slowly or not at all: memory stays bounded, and a client that takes nothing
for ``gateway.http.sendTimeoutSeconds`` has its run aborted and its upstream closed."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest
import trio

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.harness import start_server, wait_for
from tests.rawhttp import open_request, read_until


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream(Script(tokens=500_000)) as upstream:  # ~75 MB of SSE
        yield upstream


def config(up: FakeUpstream, send_timeout: float) -> dict[str, object]:
    return {
        "gateway": {"http": {"sendTimeoutSeconds": send_timeout}},
        "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
        "agents": {"defaults": {"model": "fake/m"}},
    }


async def test_a_client_that_stops_reading_is_cut_off(
    nursery: trio.Nursery, up: FakeUpstream
) -> None:
    server = await start_server(nursery, config(up, 0.3))
    client = await open_request(
        server.url, {"stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    async with client:  # closed whatever happens: a never-read socket would pin the server
        await read_until(client, b'"content":"w0')
        record = await up.wait_request(0)
        started = time.monotonic()
        with trio.fail_after(10):
            await record.closed.wait()  # the client never reads again
        assert record.closed_at is not None
        stalled_for = record.closed_at - started
        assert 0.3 <= stalled_for < 5, stalled_for
        runtime = server.gateway.runtime
        await wait_for(lambda: runtime.statistics().active_runs == 0)
        # Backpressure reached the upstream: it could not push the whole answer through.
        assert "response_end" not in {e.name for e in record.events}


async def test_a_slow_but_steady_reader_is_served_to_the_end(
    nursery: trio.Nursery, up: FakeUpstream
) -> None:
    server = await start_server(nursery, config(up, 0.5))
    up.enqueue(Script(tokens=3000))
    client = await open_request(
        server.url, {"stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    client.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    received = b""
    with trio.fail_after(30):
        while b"data: [DONE]" not in received:
            received += await client.receive_some(4096)
            await trio.sleep(0.0005)  # a slow reader, by design
    assert b'"finish_reason":"stop"' in received
    await client.aclose()
