"""Aborting WebSocket runs: ``chat.abort``, the connection closing, HTTP kill, shutdown.

Latencies are measured inside the provider (when its ``finally`` ran); the bound is 100 ms.
"""

from __future__ import annotations

import time

import httpx
import pytest
import trio
import trio.testing

from tests.harness import AUTH, ScriptedProvider, Server, start_server, task_count
from tests.memory_store import MemoryStore
from tests.ws.wsclient import Operator

LIMIT = 0.1
AGENTS = {"agents": {"defaults": {"model": "scripted/m"}}}
KEY = "agent:main:main"


def endless() -> ScriptedProvider:
    return ScriptedProvider(words=[f"w{i} " for i in range(10_000)], delay=0.01)


async def baseline_tasks() -> int:
    await trio.testing.wait_all_tasks_blocked()
    return task_count()


async def assert_nothing_left(server: Server, baseline: int) -> None:
    await trio.testing.wait_all_tasks_blocked()
    stats = server.gateway.runtime.statistics()
    assert (stats.active_runs, stats.queued_runs) == (0, 0)
    assert server.gateway.ws.hub.in_flight() == []
    assert task_count() <= baseline


async def start_agent(operator: Operator, run_id: str) -> str:
    request_id = await operator.send("agent", {"message": "go", "idempotencyKey": run_id})
    assert (await operator.response(request_id))["payload"]["status"] == "accepted"
    await operator.event("chat", state="delta")
    return request_id


async def test_chat_abort_mid_stream(nursery: trio.Nursery) -> None:
    scripted = endless()
    store = MemoryStore()
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted}, store=store)
    baseline = await baseline_tasks()
    operator = await Operator.open(server.url)
    request_id = await start_agent(operator, "r-1")
    sent_at = time.monotonic()
    abort_id = await operator.send("chat.abort", {"sessionKey": KEY, "runId": "r-1"})
    response = await operator.response(abort_id)
    call = scripted.calls[0]
    assert call.cancelled
    latency = call.ended_at - sent_at
    assert latency < LIMIT, latency
    assert response["payload"] == {"ok": True, "aborted": True, "runIds": ["r-1"]}
    # The aborted events came before the abort's response, as with the reference.
    aborted = [e["payload"] for e in operator.events if e["payload"].get("state") == "aborted"]
    assert len(aborted) == 1
    assert aborted[0]["stopReason"] == "rpc"
    assert aborted[0]["message"]["content"][0]["text"].startswith("w0 ")
    end = [
        e["payload"]
        for e in operator.events
        if e["event"] == "agent" and e["payload"]["data"].get("phase") == "end"
    ]
    assert end[-1]["data"]["aborted"] is True
    final = await operator.response(request_id)
    assert final["payload"]["summary"] == "aborted"
    assert final["payload"]["result"]["meta"]["aborted"] is True
    [(_, status)] = store.turns[KEY]
    assert status == "aborted"
    await operator.ws.send_close()
    await assert_nothing_left(server, baseline)


async def test_chat_abort_by_session_from_another_connection(nursery: trio.Nursery) -> None:
    scripted = endless()
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    sender = await Operator.open(server.url)
    other = await Operator.open(server.url)
    nothing = await other.call("chat.abort", {"sessionKey": KEY})
    assert nothing["payload"] == {"ok": True, "aborted": False, "runIds": []}
    params = {"sessionKey": KEY, "message": "go", "idempotencyKey": "cs-1"}
    assert (await sender.call("chat.send", params))["payload"]["status"] == "started"
    await sender.event("chat", state="delta")
    response = await other.call("chat.abort", {"sessionKey": KEY})
    assert response["payload"] == {"ok": True, "aborted": True, "runIds": ["cs-1"]}
    aborted = await sender.event("chat", state="aborted")
    assert aborted["payload"]["runId"] == "cs-1"
    assert scripted.calls[0].cancelled


@pytest.mark.parametrize("how", ["close frame", "tcp reset"])
async def test_closing_the_socket_cancels_its_runs(nursery: trio.Nursery, how: str) -> None:
    scripted = endless()
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    baseline = await baseline_tasks()
    owner = await Operator.open(server.url)
    follower = await Operator.open(server.url)
    await follower.call("chat.history", {"sessionKey": KEY})
    await start_agent(owner, "r-close")
    closed_at = time.monotonic()
    if how == "close frame":
        await owner.ws.send_close(1000)
    else:
        await owner.ws.aclose()
    call = scripted.calls[0]
    with trio.fail_after(2):
        await call.ended.wait()
    assert call.cancelled
    assert call.ended_at - closed_at < LIMIT, call.ended_at - closed_at
    # Whoever follows the session learns that the run was aborted.
    aborted = await follower.event("chat", state="aborted")
    assert aborted["payload"]["runId"] == "r-close"
    await follower.ws.send_close()
    await assert_nothing_left(server, baseline)


async def test_detached_runs_outlive_their_connection(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=[f"w{i} " for i in range(20)], delay=0.01)
    config = {**AGENTS, "gateway": {"ws": {"detachRunsOnClose": True}}}
    server = await start_server(nursery, config, providers={"scripted": scripted})
    owner = await Operator.open(server.url)
    follower = await Operator.open(server.url)
    await follower.call("chat.history", {"sessionKey": KEY})
    await start_agent(owner, "r-detached")
    await owner.ws.aclose()
    final = await follower.event("chat", state="final")
    assert final["payload"]["runId"] == "r-detached"
    assert not scripted.calls[0].cancelled


async def test_http_kill_aborts_a_websocket_run(nursery: trio.Nursery) -> None:
    scripted = endless()
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    operator = await Operator.open(server.url)
    request_id = await start_agent(operator, "r-kill")
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        killed = await client.post(f"/sessions/{KEY}/kill")
    assert killed.json() == {"ok": True, "killed": True}
    aborted = await operator.event("chat", state="aborted")
    assert aborted["payload"]["stopReason"] == "killed"
    final = await operator.response(request_id)
    assert final["payload"]["result"]["meta"]["aborted"] is True


async def test_shutdown_aborts_runs_then_closes_1012(nursery: trio.Nursery) -> None:
    scripted = endless()
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    operator = await Operator.open(server.url)
    idle = await Operator.open(server.url)
    await start_agent(operator, "r-shutdown")
    with trio.fail_after(3):
        await server.gateway.ws.shutdown()
    assert scripted.calls[0].cancelled
    aborted = await operator.event("chat", state="aborted")
    assert aborted["payload"]["stopReason"] == "shutdown"
    shutdown = await operator.event("shutdown")
    assert shutdown["payload"]["reason"] == "gateway stopping"
    for client in (operator, idle):
        assert (await client.ws.wait_closed()).code == 1012


async def test_server_stop_without_the_hook_still_says_goodbye(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    operator = await Operator.open(server.url)
    server.stop.set()  # Hypercorn stops; the connection is cancelled at its graceful deadline
    with trio.fail_after(3):
        closed = await operator.ws.wait_closed()
    assert closed.code == 1012
