"""A client that goes away cancels its run at once, in every phase, and leaves nothing behind.

Each test closes a real socket and measures, inside the provider, how long after the close the
run's ``finally`` ran; the bound is 100 ms (typically well under 5 ms).
"""

from __future__ import annotations

import logging
import time

import pytest
import trio
import trio.testing

from tests.harness import Call, ScriptedProvider, Server, start_server, task_count, wait_for
from tests.memory_store import MemoryStore
from tests.rawhttp import open_request, read_until

LIMIT = 0.1
AGENTS = {"agents": {"defaults": {"model": "scripted/m"}}}
USER = [{"role": "user", "content": "go"}]


async def close_and_measure(stream: trio.SocketStream, call: Call) -> float:
    closed_at = time.monotonic()
    await stream.aclose()
    with trio.fail_after(2):
        await call.ended.wait()
    return call.ended_at - closed_at


async def assert_nothing_left(server: Server, baseline: int) -> None:
    await trio.testing.wait_all_tasks_blocked()
    stats = server.gateway.runtime.statistics()
    assert stats.active_runs == 0
    assert stats.queued_runs == 0
    assert task_count() <= baseline


async def baseline_tasks() -> int:
    await trio.testing.wait_all_tasks_blocked()
    return task_count()


@pytest.mark.parametrize("stream_mode", [True, False])
async def test_disconnect_mid_stream(
    nursery: trio.Nursery, stream_mode: bool, caplog: pytest.LogCaptureFixture
) -> None:
    scripted = ScriptedProvider(words=[f"w{i} " for i in range(1000)], delay=0.01)
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    baseline = await baseline_tasks()
    stream = await open_request(server.url, {"stream": stream_mode, "messages": USER})
    if stream_mode:
        await read_until(stream, b'"content":"w0 "')
    else:
        await scripted.call_started.wait()
        await scripted.calls[0].emitted.wait()
    latency = await close_and_measure(stream, scripted.calls[0])
    assert scripted.calls[0].cancelled
    assert latency < LIMIT
    await assert_nothing_left(server, baseline)
    # A client leaving is not an error of the gateway or the provider.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("stream_mode", [True, False])
async def test_disconnect_before_first_token(nursery: trio.Nursery, stream_mode: bool) -> None:
    scripted = ScriptedProvider(first_delay=60)
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    baseline = await baseline_tasks()
    stream = await open_request(server.url, {"stream": stream_mode, "messages": USER})
    await scripted.call_started.wait()
    latency = await close_and_measure(stream, scripted.calls[0])
    assert scripted.calls[0].cancelled
    assert latency < LIMIT
    await assert_nothing_left(server, baseline)


async def test_disconnect_while_heartbeating(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(first_delay=60)
    config = {**AGENTS, "gateway": {"http": {"heartbeatSeconds": 0.02}}}
    server = await start_server(nursery, config, providers={"scripted": scripted})
    baseline = await baseline_tasks()
    stream = await open_request(server.url, {"stream": True, "messages": USER})
    await read_until(stream, b": ping\n\n")
    latency = await close_and_measure(stream, scripted.calls[0])
    assert latency < LIMIT
    await assert_nothing_left(server, baseline)


async def test_disconnect_while_queued_leaves_the_queue(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(first_delay=60)
    config = {"agents": {"defaults": {"model": "scripted/m", "maxConcurrent": 1}}}
    server = await start_server(nursery, config, providers={"scripted": scripted})
    baseline = await baseline_tasks()
    first = await open_request(server.url, {"stream": True, "messages": USER})
    await scripted.call_started.wait()
    queued = await open_request(server.url, {"stream": True, "messages": USER})
    runtime = server.gateway.runtime
    await wait_for(lambda: runtime.statistics().queued_runs == 1)
    await queued.aclose()
    await wait_for(lambda: runtime.statistics().queued_runs == 0)
    assert runtime.statistics().active_runs == 1
    assert len(scripted.calls) == 1
    await close_and_measure(first, scripted.calls[0])
    await assert_nothing_left(server, baseline)


async def test_disconnect_records_the_partial_turn_as_aborted(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["partial ", "reply ", *["more "] * 1000], delay=0.01)
    store = MemoryStore()
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted}, store=store)
    body = {"stream": True, "user": "ann", "messages": USER}
    stream = await open_request(server.url, body)
    await read_until(stream, b'"content":"reply "')
    await close_and_measure(stream, scripted.calls[0])
    with trio.fail_after(2):
        await store.appended.wait()
    [(messages, status)] = store.turns["agent:main:openai-user:ann"]
    assert status == "aborted"
    assert messages[0] == {"role": "user", "content": "go"}
    assert messages[1]["role"] == "assistant"
    assert str(messages[1]["content"]).startswith("partial reply ")
