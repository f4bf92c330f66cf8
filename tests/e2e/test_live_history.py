"""Live history (``GET /sessions/<key>/history`` with ``Accept: text/event-stream``) and the
message channel header, through the real server and the SQLite store: the snapshot then every
later message in order, cursors and limits, keepalives, errors before any stream, a client
that leaves (nothing stays behind), a shutdown (the stream ends). Across processes and hosts:
``test_live_history_processes``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from gateway.sessions.sqlite import SQLiteTranscripts
from tests.e2e.test_cancellation import assert_nothing_left, baseline_tasks
from tests.harness import AUTH, TOKEN, ScriptedProvider, Server, start_server, wait_for
from tests.history_client import Block, live_history
from tests.ws.wsclient import Operator

AGENTS = {
    "agents": {"defaults": {"model": "scripted/m"}},
    "gateway": {"http": {"heartbeatSeconds": 0.2, "endpoints": {"responses": {"enabled": True}}}},
}
KEY = "live-1"


async def serve(
    nursery: trio.Nursery, tmp_path: Path, scripted: ScriptedProvider | None = None
) -> tuple[Server, SQLiteTranscripts]:
    store = SQLiteTranscripts(tmp_path / "gateway")
    scripted = scripted or ScriptedProvider(words=["hello ", "there"])
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted}, store=store)
    return server, store


async def chat(server: Server, text: str, key: str = KEY, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=20) as client:
        return await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": text}]},
            headers={"x-openclaw-session-key": key, **headers},
        )


async def json_history(server: Server, key: str = KEY, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        return await client.get(f"/sessions/{key}/history", params=params)


async def test_snapshot_then_each_later_message_in_order(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server, _ = await serve(nursery, tmp_path)
    assert (await chat(server, "first", **{"x-openclaw-message-channel": "webchat"})).is_success
    async with live_history(server.url, KEY, TOKEN) as live:
        snapshot = await live.event()
        assert snapshot.event == "history"
        assert snapshot.data["sessionKey"] == KEY and snapshot.data["hasMore"] is False
        assert [(m["role"], m["content"], m["channel"]) for m in snapshot.data["messages"]] == [
            ("user", "first", "webchat"),
            ("assistant", "hello there", "webchat"),
        ]
        # Two later runs, one from another client without a channel, one over WebSocket.
        assert (
            await chat(server, "second", **{"x-openclaw-message-channel": "slack:C1"})
        ).is_success
        operator = await Operator.open(server.url)
        request_id = await operator.send(
            "agent", {"message": "third", "sessionKey": KEY, "idempotencyKey": "ws-run"}
        )
        await operator.response(request_id)
        assert (await operator.response(request_id))["ok"] is True
        await operator.ws.aclose()
        later = await live.messages(4)
        assert [(m["sessionKey"], m["messageSeq"]) for m in later] == [
            (KEY, n) for n in range(3, 7)
        ]
        assert [(m["message"]["role"], m["message"]["content"]) for m in later] == [
            ("user", "second"), ("assistant", "hello there"),
            ("user", "third"), ("assistant", "hello there"),
        ]  # fmt: skip
        assert [m["message"].get("channel") for m in later] == ["slack:C1"] * 2 + [None] * 2
        assert later[3]["message"]["runId"] == "ws-run"
        assert later[3]["messageId"] == "ws-run:6"
        # Nothing more, none repeated: keepalives while the session is quiet.
        with trio.fail_after(5):
            for _ in range(2):
                assert await live.block() == Block([": keepalive"])
    # Each live message has the shape of the JSON answer's.
    page = (await json_history(server)).json()
    assert [m["message"] for m in later] == page["messages"][2:]


async def test_limit_and_cursor_are_honoured(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, _ = await serve(nursery, tmp_path)
    for n in range(3):
        await chat(server, f"q{n}")
    cursor = (await json_history(server, limit=2)).json()["nextCursor"]
    async with (
        live_history(server.url, KEY, TOKEN, limit=2) as first_page,
        live_history(server.url, KEY, TOKEN, cursor=cursor) as rest,
    ):
        head = (await first_page.event()).data
        assert [m["content"] for m in head["messages"]] == ["q0", "hello there"]
        assert head["hasMore"] is True
        tail = (await rest.event()).data
        assert [m["content"] for m in tail["messages"]] == [
            "q1",
            "hello there",
            "q2",
            "hello there",
        ]
        assert tail["hasMore"] is False
        await chat(server, "new")
        # Both continue after the transcript's end when they asked, not after their page.
        for live in (first_page, rest):
            assert [m["messageSeq"] for m in await live.messages(2)] == [7, 8]


async def test_errors_come_before_any_stream(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, _ = await serve(nursery, tmp_path)
    await chat(server, "hi")
    sse = {"Accept": "text/event-stream"}
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        missing = await client.get("/sessions/nobody/history", headers={**AUTH, **sse})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/json"
        assert missing.json()["error"]["code"] == "session_not_found"
        anonymous = await client.get(f"/sessions/{KEY}/history", headers=sse)
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["type"] == "unauthorized"
        for params in ({"limit": "0"}, {"cursor": "nonsense"}):
            bad = await client.get(
                f"/sessions/{KEY}/history", params=params, headers={**AUTH, **sse}
            )
            assert bad.status_code == 400 and bad.json()["error"]["param"] in params
        # Without the Accept header (or with a HEAD) the answer is the JSON page.
        plain = await client.get(f"/sessions/{KEY}/history", headers=AUTH)
        assert plain.headers["content-type"] == "application/json"
        head = await client.head(f"/sessions/{KEY}/history", headers={**AUTH, **sse})
        assert head.status_code == 200 and head.headers["content-type"] == "application/json"


async def test_a_client_that_leaves_leaves_nothing(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, store = await serve(nursery, tmp_path)
    await chat(server, "hi")
    baseline = await baseline_tasks()
    for _ in range(3):
        async with live_history(server.url, KEY, TOKEN) as live:
            await live.event()
            await wait_for(lambda: store.follow.statistics().waiters == 1)
            assert server.gateway.routes.history.waiting == 1
        # The client closed its connection: the follower is gone at once (measured: under 2 ms).
        await wait_for(lambda: store.follow.statistics().waiters == 0, seconds=0.5)
        assert server.gateway.routes.history.waiting == 0
        await assert_nothing_left(server, baseline)
    # And the session still works.
    assert (await chat(server, "again")).is_success


async def test_shutdown_ends_the_stream_after_the_last_turns(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    scripted = ScriptedProvider(words=["hello"])
    server, _ = await serve(nursery, tmp_path, scripted)
    await chat(server, "before")
    scripted.first_delay = 60  # the next run waits: the shutdown aborts it
    async with live_history(server.url, KEY, TOKEN) as live:
        await live.event()
        async with trio.open_nursery() as clients:
            clients.start_soon(chat, server, "in flight")
            await wait_for(lambda: len(scripted.calls) == 2)  # admitted: its turn is recorded
            with trio.fail_after(5):
                await server.gateway.stop_runs(0.0)
        # The aborted turn, then the end of the stream.
        aborted = await live.messages(1)
        assert aborted[0]["message"]["content"] == "in flight"
        assert aborted[0]["message"]["status"] == "aborted"
        with trio.fail_after(5):
            assert await live.block() is None


async def test_the_channel_is_recorded_with_the_turn(nursery: trio.Nursery, tmp_path: Path) -> None:
    server, _ = await serve(nursery, tmp_path)
    header = {"x-openclaw-message-channel": "Ops.Alerts_2"}
    assert (await chat(server, "via chat", **header)).is_success
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=20) as client:
        answered = await client.post(
            "/v1/responses", json={"input": "via responses"},
            headers={"x-openclaw-session-key": KEY, "x-openclaw-message-channel": "cli"},
        )  # fmt: skip
        assert answered.status_code == 200
    messages = (await json_history(server)).json()["messages"]
    assert [(m["role"], m.get("channel")) for m in messages] == [
        ("user", "Ops.Alerts_2"),
        ("assistant", "Ops.Alerts_2"),
        ("user", "cli"),
        ("assistant", "cli"),
    ]
    operator = await Operator.open(server.url)
    shown = (await operator.call("chat.history", {"sessionKey": KEY}))["payload"]["messages"]
    await operator.ws.aclose()
    assert [m.get("channel") for m in shown] == ["Ops.Alerts_2"] * 2 + ["cli"] * 2


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
@pytest.mark.parametrize("channel", ["has space", "x" * 65, "slack/#general"])
async def test_a_bad_channel_is_refused_and_nothing_stored(
    nursery: trio.Nursery, tmp_path: Path, path: str, channel: str
) -> None:
    server, _ = await serve(nursery, tmp_path)
    body: dict[str, Any] = (
        {"messages": [{"role": "user", "content": "hi"}]}
        if path == "/v1/chat/completions"
        else {"input": "hi"}
    )
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=20) as client:
        headers = {"x-openclaw-session-key": "bad-channel", "x-openclaw-message-channel": channel}
        refused = await client.post(path, json=body, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": "Invalid `x-openclaw-message-channel`. Use 1-64 letters, digits, '.', '_',"
        " ':' or '-'.",
        "type": "invalid_request_error",
        "param": "x-openclaw-message-channel",
        "code": None,
    }
    assert (await json_history(server, "bad-channel")).status_code == 404
    await trio.testing.wait_all_tasks_blocked()
    assert server.gateway.runtime.statistics().active_runs == 0
