"""Runs started for a connection, without sockets: ownership, aborting, the final answer."""

from __future__ import annotations

import json

import pytest
import trio

from gateway.agents.events import AbortReason, Finish, RunEvent, TextDelta, Usage
from gateway.agents.runtime import AgentRuntime
from gateway.providers.registry import ProviderRegistry
from gateway.sessions.admission import LocalAdmission
from gateway.settings import AgentDefaults, AgentSettings, AgentsSettings, ModelChoice
from gateway.ws.hub import Hub
from gateway.ws.runs import Runs, RunSpec, coalesce
from tests.harness import ScriptedProvider
from tests.memory_store import MemoryStore
from tests.ws.test_hub import FakePeer

AGENT = AgentSettings(id="main")


def runtime_with(provider: ScriptedProvider) -> AgentRuntime:
    agents = AgentsSettings(defaults=AgentDefaults(model=ModelChoice("scripted/m")))
    registry = ProviderRegistry({"scripted": provider})
    return AgentRuntime(agents, registry, MemoryStore(), LocalAdmission(4))


def spec(run_id: str = "r") -> RunSpec:
    return RunSpec(run_id=run_id, agent=AGENT, session_key="agent:main:main", message="go")


def frames(peer: FakePeer) -> list[dict]:
    out = []
    while peer.outbox.statistics().queued:
        out.append(json.loads(str(peer.outbox._items.popleft())))
    return out


async def accepted() -> None:
    return None


def not_detached() -> trio.Nursery:
    raise AssertionError("runs are not detached")


async def test_abort_before_the_run_starts() -> None:
    scripted = ScriptedProvider()
    hub = Hub()
    peer = FakePeer("p")
    hub.attach(peer)
    runs = Runs(runtime_with(scripted), hub, detach_on_close=False, app_nursery=not_detached)
    async with trio.open_nursery() as nursery:
        ticket = await runs.start(spec(), peer, nursery, accepted, answer_id="req-1")
        # The run's task has not run yet; its handle exists from the acceptance on.
        aborted = runs.abort(
            [ticket], AbortReason.KILLED, session_key="agent:main:main", run_id="r"
        )
        assert aborted == {"r"}
    assert ticket.done.is_set()
    assert scripted.calls == []
    sent = frames(peer)
    chat = [f["payload"] for f in sent if f.get("event") == "chat"]
    assert [c["state"] for c in chat] == ["aborted"]
    assert chat[0]["stopReason"] == "rpc"
    final = sent[-1]
    assert final["type"] == "res" and final["id"] == "req-1"
    assert final["payload"]["summary"] == "aborted"
    assert hub.in_flight() == []


async def test_runs_live_in_the_origin_nursery() -> None:
    scripted = ScriptedProvider(first_delay=60)
    hub = Hub()
    peer = FakePeer("p")
    hub.attach(peer)
    runs = Runs(runtime_with(scripted), hub, detach_on_close=False, app_nursery=not_detached)
    async with trio.open_nursery() as connection:
        ticket = await runs.start(spec(), peer, connection, accepted)
        await scripted.call_started.wait()
        connection.cancel_scope.cancel()  # the connection closes
    assert scripted.calls[0].cancelled
    assert ticket.done.is_set()
    states = [f["payload"].get("state") for f in frames(peer) if f.get("event") == "chat"]
    assert states == ["aborted"]


async def test_detached_runs_live_in_the_app_nursery() -> None:
    scripted = ScriptedProvider(words=["a"], first_delay=0.01)
    hub = Hub()
    peer = FakePeer("p")
    hub.attach(peer)
    async with trio.open_nursery() as app:
        runs = Runs(runtime_with(scripted), hub, detach_on_close=True, app_nursery=lambda: app)
        async with trio.open_nursery() as connection:
            ticket = await runs.start(spec(), peer, connection, accepted, answer_id="req")
            connection.cancel_scope.cancel()
        hub.detach(peer)
        peer.outbox.shut()  # the connection is gone: its answer is dropped, not waited for
        await ticket.done.wait()
    assert not scripted.calls[0].cancelled
    assert ticket.translator.status == "ok"


async def test_coalesce_merges_only_the_text_already_waiting() -> None:
    send, receive = trio.open_memory_channel[RunEvent](10)
    for event in (TextDelta("b"), TextDelta("c"), Usage(1, 2), TextDelta("d")):
        send.send_nowait(event)
    assert coalesce(TextDelta("a"), receive) == [TextDelta("abc"), Usage(1, 2)]
    assert coalesce(Finish("stop"), receive) == [Finish("stop")]
    assert coalesce(TextDelta("x"), receive) == [TextDelta("xd")]
    assert coalesce(TextDelta("y"), receive) == [TextDelta("y")]  # nothing waiting


async def test_a_run_whose_acceptance_fails_never_starts() -> None:
    scripted = ScriptedProvider()
    hub = Hub()
    peer = FakePeer("p")
    runs = Runs(runtime_with(scripted), hub, detach_on_close=False, app_nursery=not_detached)

    async def refuse() -> None:
        raise trio.ClosedResourceError("the connection is closing")

    async with trio.open_nursery() as nursery:
        with pytest.raises(trio.ClosedResourceError):
            await runs.start(spec(), peer, nursery, refuse)
    assert hub.lookup("r") is None
    assert scripted.calls == []
