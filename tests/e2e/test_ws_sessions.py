"""Session methods over WebSocket on the SQLite store: list, history, reset, delete."""

from __future__ import annotations

from pathlib import Path

import trio

from gateway.sessions.sqlite import SQLiteTranscripts
from tests.harness import ScriptedProvider, Server, start_server
from tests.ws.wsclient import Operator

AGENTS = {"agents": {"defaults": {"model": "scripted/m"}, "list": [{"id": "main"}, {"id": "ops"}]}}


async def serve(nursery: trio.Nursery, tmp_path: Path, scripted: ScriptedProvider) -> Server:
    store = SQLiteTranscripts(tmp_path / "gateway")
    return await start_server(nursery, AGENTS, providers={"scripted": scripted}, store=store)


async def run(operator: Operator, key: str, run_id: str) -> None:
    request_id = await operator.send(
        "agent", {"message": f"hello {run_id}", "sessionKey": key, "idempotencyKey": run_id}
    )
    await operator.response(request_id)
    assert (await operator.response(request_id))["ok"] is True


async def test_list_history_reset_delete(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await serve(nursery, tmp_path, ScriptedProvider(words=["fine"]))
    operator = await Operator.open(server.url)
    for i in range(3):
        await run(operator, "agent:main:a", f"a{i}")
    await run(operator, "agent:ops:b", "b0")

    listed = (await operator.call("sessions.list", {}))["payload"]
    assert listed["count"] == 2
    by_key = {s["key"]: s for s in listed["sessions"]}
    assert by_key["agent:main:a"]["messageCount"] == 6
    assert by_key["agent:ops:b"]["agentId"] == "ops"
    only_ops = (await operator.call("sessions.list", {"agentId": "ops", "limit": 5}))["payload"]
    assert [s["key"] for s in only_ops["sessions"]] == ["agent:ops:b"]

    history = (await operator.call("chat.history", {"sessionKey": "agent:main:a", "limit": 3}))[
        "payload"
    ]
    # The newest three, oldest first.
    assert [m["role"] for m in history["messages"]] == ["assistant", "user", "assistant"]
    assert history["messages"][1]["content"] == "hello a2"
    assert history["hasMore"] is True and history["totalMessages"] == 6
    missing = (await operator.call("chat.history", {"sessionKey": "agent:main:none"}))["payload"]
    assert missing["messages"] == []

    reset = await operator.call("sessions.reset", {"key": "agent:main:a"})
    assert reset["payload"] == {"ok": True, "key": "agent:main:a", "reset": True}
    history = (await operator.call("chat.history", {"sessionKey": "agent:main:a"}))["payload"]
    assert history["messages"] == []
    deleted = await operator.call("sessions.delete", {"key": "agent:ops:b"})
    assert deleted["payload"] == {"ok": True, "key": "agent:ops:b", "deleted": True}
    again = await operator.call("sessions.delete", {"key": "agent:ops:b"})
    assert again["payload"]["deleted"] is False
    listed = (await operator.call("sessions.list", {}))["payload"]
    assert [s["key"] for s in listed["sessions"]] == ["agent:main:a"]


async def test_reset_aborts_the_running_reply(nursery: trio.Nursery, tmp_path: Path) -> None:
    scripted = ScriptedProvider(words=[f"w{i} " for i in range(10_000)], delay=0.01)
    server = await serve(nursery, tmp_path, scripted)
    operator = await Operator.open(server.url)
    request_id = await operator.send(
        "agent", {"message": "go", "sessionKey": "agent:main:r", "idempotencyKey": "r-1"}
    )
    await operator.response(request_id)
    await operator.event("chat", state="delta")
    reset = await operator.call("sessions.reset", {"key": "agent:main:r"})
    assert reset["payload"]["reset"] is True
    assert scripted.calls[0].cancelled
    history = (await operator.call("chat.history", {"sessionKey": "agent:main:r"}))["payload"]
    assert history["messages"] == []  # the aborted turn was recorded before the reset
