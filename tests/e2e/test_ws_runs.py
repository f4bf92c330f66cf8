"""Agent runs over WebSocket: ``agent``, ``chat.send``, idempotency, errors, followers."""

from __future__ import annotations

import dataclasses

import trio
import trio.testing

from gateway.agents.events import TextDelta
from gateway.providers.base import Emit, ModelRequest, ProviderError
from tests.harness import ScriptedProvider, start_server
from tests.memory_store import MemoryStore
from tests.ws.wsclient import Operator

AGENTS = {"agents": {"defaults": {"model": "scripted/m"}}}


def agent_events(operator: Operator, run_id: str) -> list[dict]:
    return [
        e["payload"]
        for e in operator.events
        if e["event"] == "agent" and e["payload"]["runId"] == run_id
    ]


def chat_events(operator: Operator, run_id: str) -> list[dict]:
    return [
        e["payload"]
        for e in operator.events
        if e["event"] == "chat" and e["payload"]["runId"] == run_id
    ]


async def test_agent_streams_events_then_the_final_answer(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["one ", "two ", "three"])
    store = MemoryStore()
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted}, store=store)
    operator = await Operator.open(server.url, scopes=["operator.write"])
    request_id = await operator.send("agent", {"message": "hi", "idempotencyKey": "run-1"})
    accepted = await operator.response(request_id)
    assert accepted["ok"] is True
    assert accepted["payload"]["status"] == "accepted"
    assert accepted["payload"]["runId"] == "run-1"
    assert accepted["payload"]["sessionKey"] == "agent:main:main"
    assert isinstance(accepted["payload"]["acceptedAt"], int)
    final = await operator.response(request_id)
    assert final["ok"] is True
    payload = final["payload"]
    assert (payload["runId"], payload["status"], payload["summary"]) == ("run-1", "ok", "completed")
    assert payload["result"]["payloads"] == [{"text": "one two three", "mediaUrl": None}]
    meta = payload["result"]["meta"]
    assert meta["aborted"] is False and meta["stopReason"] == "stop"
    assert meta["usage"] == {"input": 7, "output": 3, "total": 10}
    assert isinstance(meta["durationMs"], int)

    agent = agent_events(operator, "run-1")
    assert [e["seq"] for e in agent] == list(range(1, len(agent) + 1))
    assert agent[0]["stream"] == "lifecycle" and agent[0]["data"]["phase"] == "start"
    assistant = [e["data"] for e in agent if e["stream"] == "assistant"]
    # One event per fragment, or fewer when fragments waited for the publisher (merged).
    assert "".join(a["delta"] for a in assistant) == "one two three"
    assert assistant[-1]["text"] == "one two three"
    assert any(e["stream"] == "usage" for e in agent)
    assert agent[-1]["data"] == {**agent[-1]["data"], "phase": "end", "aborted": False}
    chat = chat_events(operator, "run-1")
    assert [c["state"] for c in chat] == ["delta"] * len(assistant) + ["final"]
    assert chat[-1]["message"]["content"] == [{"type": "text", "text": "one two three"}]
    # Frame seq counts every event of the connection from 1, without gaps here.
    assert [e["seq"] for e in operator.events] == list(range(1, len(operator.events) + 1))
    # The run used the stateful session, like HTTP runs with a session key.
    [(messages, status)] = store.turns["agent:main:main"]
    assert status == "complete"
    assert messages[0] == {"role": "user", "content": "hi"}


async def test_agent_session_key_rules_and_options(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["ok"])
    config = {**AGENTS, "agents": {**AGENTS["agents"], "list": [{"id": "main"}, {"id": "ops"}]}}
    server = await start_server(nursery, config, providers={"scripted": scripted})
    operator = await Operator.open(server.url)

    async def run(params: dict) -> dict:
        request_id = await operator.send("agent", {"message": "hi", **params})
        accepted = await operator.response(request_id)
        assert accepted["ok"], accepted
        final = await operator.response(request_id)
        assert final["ok"], final
        return accepted["payload"]

    assert (await run({"idempotencyKey": "a"}))["sessionKey"] == "agent:main:main"
    explicit = await run({"idempotencyKey": "b", "agentId": "ops", "sessionId": "s-1"})
    assert (explicit["sessionKey"], explicit["agentId"]) == ("agent:ops:explicit:s-1", "ops")
    keyed = await run({"idempotencyKey": "c", "sessionKey": "agent:ops:capture-key"})
    assert (keyed["sessionKey"], keyed["agentId"]) == ("agent:ops:capture-key", "ops")
    await run(
        {
            "idempotencyKey": "d",
            "model": "echo/echo",
            "extraSystemPrompt": "Be brief.",
            "timeout": 30,
        }
    )
    assert len(scripted.calls) == 3  # the model override went to echo
    await run({"idempotencyKey": "e", "extraSystemPrompt": "Be brief."})
    assert scripted.calls[-1].request.system is not None
    assert "Be brief." in scripted.calls[-1].request.system

    bad_model = await operator.call(
        "agent", {"message": "hi", "idempotencyKey": "f", "model": "nope/x"}
    )
    assert bad_model["error"]["code"] == "INVALID_REQUEST"
    assert bad_model["error"]["details"] == {"field": "model"}
    bad_agent = await operator.call(
        "agent", {"message": "hi", "idempotencyKey": "g", "agentId": "x"}
    )
    assert bad_agent["error"]["details"] == {"field": "agentId"}
    reserved = await operator.call(
        "agent", {"message": "hi", "idempotencyKey": "h", "sessionKey": "cron:job"}
    )
    assert reserved["error"]["details"] == {"field": "sessionKey"}


class GatedProvider:
    """Says "gated reply" once ``gate`` is set."""

    id = "scripted"

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.started = trio.Event()
        self.calls = 0

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        self.calls += 1
        self.started.set()
        await self.gate.wait()
        await emit(TextDelta("gated reply"))

    async def aclose(self) -> None:
        return None


async def test_idempotency_in_flight_then_cached(nursery: trio.Nursery) -> None:
    gated = GatedProvider()
    server = await start_server(nursery, AGENTS, providers={"scripted": gated})
    operator = await Operator.open(server.url)
    other = await Operator.open(server.url)
    params = {"message": "hi", "idempotencyKey": "same"}
    first = await operator.send("agent", params)
    assert (await operator.response(first))["payload"]["status"] == "accepted"
    await gated.started.wait()
    again = await other.call("agent", params)
    assert again["ok"] is True
    assert again["payload"]["status"] == "in_flight"
    assert again["payload"]["runId"] == "same"
    gated.gate.set()
    final = await operator.response(first)
    assert final["payload"]["status"] == "ok"
    retry = await other.call("agent", params)
    assert retry["payload"] == final["payload"]
    assert gated.calls == 1
    # The same key through chat.send is the same run.
    resent = await operator.call(
        "chat.send", {"sessionKey": "agent:main:main", "message": "hi", "idempotencyKey": "same"}
    )
    assert resent["payload"] == {"runId": "same", "status": "ok"}


async def test_chat_send_answers_started_then_events_reach_followers(
    nursery: trio.Nursery,
) -> None:
    scripted = ScriptedProvider(words=["a ", "b"])
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    sender = await Operator.open(server.url)
    follower = await Operator.open(server.url)
    bystander = await Operator.open(server.url)
    key = "agent:main:shared"
    assert (await follower.call("chat.history", {"sessionKey": key}))["ok"] is True
    response = await sender.call(
        "chat.send", {"sessionKey": key, "message": "hello", "idempotencyKey": "cs-1"}
    )
    assert response["payload"] == {"runId": "cs-1", "status": "started"}
    for operator in (sender, follower):
        final = await operator.event("chat", state="final")
        assert final["payload"]["runId"] == "cs-1"
        assert final["payload"]["message"]["content"] == [{"type": "text", "text": "a b"}]
        states = [c["state"] for c in chat_events(operator, "cs-1")]
        assert states[-1] == "final" and set(states[:-1]) == {"delta"}
    # A connection that neither started nor follows the session hears nothing of it.
    assert (await bystander.call("status"))["ok"] is True
    await trio.testing.wait_all_tasks_blocked()
    assert chat_events(bystander, "cs-1") == []


async def test_provider_failure_is_unavailable(nursery: trio.Nursery) -> None:
    failing = ScriptedProvider(fail=ProviderError("upstream", "the upstream broke"))
    server = await start_server(nursery, AGENTS, providers={"scripted": failing})
    operator = await Operator.open(server.url)
    request_id = await operator.send("agent", {"message": "hi", "idempotencyKey": "f-1"})
    await operator.response(request_id)
    final = await operator.response(request_id)
    assert final["ok"] is False
    assert final["error"]["code"] == "UNAVAILABLE"
    assert "the upstream broke" in final["error"]["message"]
    assert final["error"]["retryable"] is True
    chat = chat_events(operator, "f-1")
    assert chat[-1]["state"] == "error"
    assert "the upstream broke" in chat[-1]["errorMessage"]
    assert agent_events(operator, "f-1")[-1]["data"]["phase"] == "error"


async def test_failure_with_a_lone_surrogate_after_output_ends_the_run(
    nursery: trio.Nursery,
) -> None:
    failing = ScriptedProvider(fail=ProviderError("upstream", "odd \udc80 end"), fail_after=1)
    server = await start_server(nursery, AGENTS, providers={"scripted": failing})
    operator = await Operator.open(server.url)
    request_id = await operator.send("agent", {"message": "hi", "idempotencyKey": "s-1"})
    await operator.response(request_id)
    final = await operator.response(request_id)
    assert final["ok"] is False
    chat = chat_events(operator, "s-1")
    assert chat[-1]["state"] == "error"
    assert "odd \ufffd end" in chat[-1]["errorMessage"]


async def test_run_timeout_is_agent_timeout(nursery: trio.Nursery) -> None:
    slow = ScriptedProvider(first_delay=60)
    server = await start_server(nursery, AGENTS, providers={"scripted": slow})
    operator = await Operator.open(server.url)
    params = {"message": "hi", "idempotencyKey": "t-1", "timeout": 0.05}
    request_id = await operator.send("agent", params)
    await operator.response(request_id)
    final = await operator.response(request_id)
    assert final["error"]["code"] == "AGENT_TIMEOUT"
    assert final["payload"]["status"] == "timeout"
    assert slow.calls[0].cancelled


async def test_a_slow_reader_loses_events_not_the_run(nursery: trio.Nursery) -> None:
    words = [f"{i:04d}" + "x" * 1000 + " " for i in range(300)]
    scripted = ScriptedProvider(words=words)
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    ws = server.gateway.ws
    ws.policy = dataclasses.replace(ws.policy, max_queued_frames=8)
    operator = await Operator.open(server.url)
    request_id = await operator.send("agent", {"message": "hi", "idempotencyKey": "big"})
    # Not reading: the run must still finish (its provider call ends) on its own.
    with trio.fail_after(5):
        await scripted.call_started.wait()
        await scripted.calls[0].ended.wait()
    assert not scripted.calls[0].cancelled
    accepted = await operator.response(request_id)
    final = await operator.response(request_id)
    assert accepted["payload"]["status"] == "accepted"
    assert final["payload"]["result"]["payloads"][0]["text"] == "".join(words)
    seqs = [e["seq"] for e in operator.events]
    assert seqs == sorted(seqs)
    assert len(seqs) < seqs[-1]  # a gap: events were dropped, not queued without bound


async def test_the_same_key_twice_at_once_runs_once(nursery: trio.Nursery) -> None:
    gated = GatedProvider()
    server = await start_server(nursery, AGENTS, providers={"scripted": gated})
    operator = await Operator.open(server.url)
    params = {"message": "hi", "idempotencyKey": "twice"}
    # Requests of one connection are handled concurrently: both race for the key.
    first = await operator.send("agent", params)
    second = await operator.send("agent", params)
    statuses = {
        (await operator.response(first))["payload"]["status"],
        (await operator.response(second))["payload"]["status"],
    }
    assert statuses == {"accepted", "in_flight"}
    gated.gate.set()
    await operator.event("chat", state="final")
    assert gated.calls == 1
