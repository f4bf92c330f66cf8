"""Durable sessions through the real server and the real SQLite store."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.sessions.sqlite import SQLiteTranscripts
from tests.harness import AUTH, ScriptedProvider, Server, start_server, wait_for
from tests.rawhttp import open_request, read_until

AGENTS = {
    "agents": {
        "defaults": {"model": "scripted/m"},
        "list": [{"id": "main"}, {"id": "ops"}],
    }
}


async def serve(
    nursery: trio.Nursery,
    state: Path,
    provider: ScriptedProvider,
    config: dict[str, Any] | None = None,
) -> Server:
    cfg = {**AGENTS, **(config or {})}
    store = SQLiteTranscripts(state / "gateway")
    return await start_server(nursery, cfg, providers={"scripted": provider}, store=store)


async def chat(server: Server, messages: list[dict[str, Any]], **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=20) as client:
        headers = body.pop("headers", {})
        return await client.post(
            "/v1/chat/completions", json={"messages": messages, **body}, headers=headers
        )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


async def history(server: Server, key: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        return await client.get(f"/sessions/{key}/history", params=params)


async def test_history_seen_on_the_next_request_without_duplicates(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    model = ScriptedProvider(words=["reply"])
    server = await serve(nursery, tmp_path, model)
    assert (await chat(server, [user("first")], user="ann")).status_code == 200
    await chat(server, [user("second")], user="ann")
    assert model.calls[1].request.messages == [user("first"), assistant("reply"), user("second")]
    # A client that resends its whole history does not duplicate it.
    await chat(
        server,
        [user("first"), assistant("reply"), user("second"), assistant("reply"), user("third")],
        user="ann",
    )
    assert [m["content"] for m in model.calls[2].request.messages] == [
        "first",
        "reply",
        "second",
        "reply",
        "third",
    ]
    page = (await history(server, "agent:main:openai-user:ann")).json()
    assert [(m["role"], m["content"], m["status"]) for m in page["messages"]] == [
        ("user", "first", "complete"),
        ("assistant", "reply", "complete"),
        ("user", "second", "complete"),
        ("assistant", "reply", "complete"),
        ("user", "third", "complete"),
        ("assistant", "reply", "complete"),
    ]
    assert all(isinstance(m["timestamp"], int) for m in page["messages"])


async def test_isolation_between_users_agents_and_stateless_runs(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    model = ScriptedProvider(words=["ok"])
    server = await serve(nursery, tmp_path, model)
    await chat(server, [user("ann's secret")], user="ann")
    await chat(server, [user("bob here")], user="bob")
    await chat(server, [user("ops for ann")], user="ann", model="openclaw:ops")
    await chat(server, [user("nobody")])
    await chat(server, [user("again")], user="ann")
    assert model.calls[1].request.messages == [user("bob here")]
    assert model.calls[2].request.messages == [user("ops for ann")]
    assert model.calls[3].request.messages == [user("nobody")]
    assert [m["content"] for m in model.calls[4].request.messages] == [
        "ann's secret",
        "ok",
        "again",
    ]
    assert (await history(server, "agent:ops:openai-user:ann")).status_code == 200
    stateless = await chat(server, [user("x")])
    key = stateless.headers["x-openclaw-session-key"]
    assert (await history(server, key)).status_code == 404


async def test_restart_keeps_history(nursery: trio.Nursery, tmp_path: Path) -> None:
    first = await serve(nursery, tmp_path, ScriptedProvider(words=["remembered"]))
    await chat(first, [user("before restart")], headers={"x-openclaw-session-key": "s1"})
    first.stop.set()
    model = ScriptedProvider(words=["ok"])
    second = await serve(nursery, tmp_path, model)
    await chat(second, [user("after restart")], headers={"x-openclaw-session-key": "s1"})
    assert [m["content"] for m in model.calls[0].request.messages] == [
        "before restart",
        "remembered",
        "after restart",
    ]


async def test_one_key_runs_one_at_a_time_two_keys_in_parallel(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    model = ScriptedProvider(words=["a ", "b"], delay=0.1)
    server = await serve(nursery, tmp_path, model)
    async with trio.open_nursery() as clients:
        for text in ("one", "two"):
            clients.start_soon(partial(chat, server, [user(text)], user="same"))
            await wait_for(lambda: len(model.calls) >= 1)
    assert len(model.calls) == 2
    first, second = model.calls
    assert second.started_at >= first.ended_at, "the same session ran twice at once"
    model.calls.clear()
    async with trio.open_nursery() as clients:
        clients.start_soon(partial(chat, server, [user("x")], user="k1"))
        clients.start_soon(partial(chat, server, [user("y")], user="k2"))
    a, b = model.calls
    assert b.started_at < a.ended_at and a.started_at < b.ended_at, "different sessions queued"


async def test_a_cancelled_waiter_leaves_the_queue(nursery: trio.Nursery, tmp_path: Path) -> None:
    model = ScriptedProvider(first_delay=60)
    store = SQLiteTranscripts(tmp_path / "gateway")
    server = await start_server(nursery, AGENTS, providers={"scripted": model}, store=store)
    body = {"user": "q", "stream": True, "messages": [user("hold")]}
    holder = await open_request(server.url, body)
    await model.call_started.wait()
    waiter = await open_request(server.url, body)
    runtime = server.gateway.runtime
    await wait_for(lambda: runtime.statistics().queued_runs == 1)
    await waiter.aclose()
    await wait_for(lambda: runtime.statistics().queued_runs == 0)
    await holder.aclose()
    await wait_for(lambda: runtime.statistics().active_runs == 0)
    stats = server.gateway.runtime.admission.statistics()
    assert (stats.sessions_held, stats.sessions_waiting, stats.slots_held, stats.slots_waiting) == (
        0,
        0,
        0,
        0,
    )
    assert len(model.calls) == 1
    model.first_delay = 0
    assert (await chat(server, [user("next")], user="q")).status_code == 200


async def test_kill_aborts_the_active_run(nursery: trio.Nursery, tmp_path: Path) -> None:
    model = ScriptedProvider(words=["partial ", *["more "] * 1000], delay=0.01)
    server = await serve(nursery, tmp_path, model)
    stream = await open_request(server.url, {"user": "k", "stream": True, "messages": [user("go")]})
    await read_until(stream, b'"content":"partial "')
    key = "agent:main:openai-user:k"
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        killed = await client.post(f"/sessions/{key}/kill")
        assert killed.json() == {"ok": True, "killed": True}
        tail = await read_until(stream, b"data: [DONE]\n\n")
        assert b'"type":"aborted"' in tail
        await stream.aclose()
        assert model.calls[0].cancelled
        again = await client.post(f"/sessions/{key}/kill")
        assert again.json() == {"ok": True, "killed": False}
        assert (await client.get(f"/sessions/{key}/kill")).status_code == 405
        assert (
            await client.post(f"/sessions/{key}/kill", headers={"Authorization": "x"})
        ).status_code == 401
    messages = (await history(server, key)).json()["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "aborted"),
        ("assistant", "aborted"),
    ]
    assert messages[1]["aborted"] is True
    assert messages[1]["content"].startswith("partial ")


async def test_history_paging_and_errors(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await serve(nursery, tmp_path, ScriptedProvider(words=["r"]))
    for i in range(3):
        await chat(server, [user(f"m{i}")], user="pager")
    key = "agent:main:openai-user:pager"
    page = (await history(server, key, limit=4)).json()
    assert [m["content"] for m in page["messages"]] == ["m0", "r", "m1", "r"]
    rest = (await history(server, key, limit=4, cursor=page["nextCursor"])).json()
    assert [m["content"] for m in rest["messages"]] == ["m2", "r"]
    assert rest["nextCursor"] is None
    assert (await history(server, key, limit=0)).status_code == 400
    assert (await history(server, key, cursor="garbage")).status_code == 400
    missing = await history(server, "nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get(f"/sessions/{key}/history")).status_code == 401


@pytest.mark.parametrize("limit", [2, 3])
async def test_history_limit_bounds_what_the_model_sees(
    nursery: trio.Nursery, tmp_path: Path, limit: int
) -> None:
    model = ScriptedProvider(words=["r"])
    config = {
        "agents": {**AGENTS["agents"], "defaults": {"model": "scripted/m", "historyLimit": limit}}
    }
    server = await serve(nursery, tmp_path, model, config)
    for i in range(3):
        await chat(server, [user(f"m{i}")], user="lim")
    sent = model.calls[2].request.messages
    assert len(sent) == limit + 1
    assert sent[-1] == user("m2")
