"""The WebSocket handshake and connection limits against the real server."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest
import trio

from tests.harness import AUTH, TOKEN, Server, settings_from, start_server
from tests.ws.wsclient import Operator, WsClient, connect_params


def shorten(server: Server, **changes: float) -> None:
    """Replace the WebSocket policy (connections opened from now on use it)."""
    ws = server.gateway.ws
    ws.policy = dataclasses.replace(ws.policy, **changes)


async def open_challenged(server: Server, path: str = "/") -> tuple[WsClient, dict]:
    ws = await WsClient.connect(server.url, path)
    return ws, await ws.receive_json()


def connect_frame(**params: object) -> dict:
    return {"type": "req", "id": "1:abc", "method": "connect", "params": connect_params(**params)}


async def test_hello_ok(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    ws, challenge = await open_challenged(server)
    assert challenge["event"] == "connect.challenge"
    assert "seq" not in challenge
    assert set(challenge["payload"]) >= {"nonce", "ts"}
    await ws.send_json(connect_frame(scopes=["operator.read"]))
    hello = await ws.receive_json()
    assert hello["id"] == "1:abc" and hello["ok"] is True
    payload = hello["payload"]
    assert payload["type"] == "hello-ok"
    assert payload["protocol"] == 4
    assert set(payload["server"]) == {"version", "connId"}
    assert "agent" in payload["features"]["methods"]
    assert "chat" in payload["features"]["events"]
    assert payload["auth"] == {"method": "token", "role": "operator", "scopes": ["operator.read"]}
    assert payload["policy"] == {
        "maxPayload": 25 * 1024 * 1024,
        "maxBufferedBytes": 50 * 1024 * 1024,
        "tickIntervalMs": 30000,
    }
    assert payload["snapshot"]["sessionDefaults"]["mainSessionKey"] == "agent:main:main"
    # Like the CLI: an empty close frame, echoed as an empty close frame.
    assert (await ws.send_close()).code is None


async def test_any_path_and_protocol_three(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    ws, _ = await open_challenged(server, "/some/where?x=1")
    frame = connect_frame()
    frame["params"].update(minProtocol=3, maxProtocol=3)
    await ws.send_json(frame)
    assert (await ws.receive_json())["payload"]["protocol"] == 3


@pytest.mark.parametrize(
    "first",
    [
        {"type": "req", "id": "1:x", "method": "health"},
        {"type": "event", "event": "hello", "payload": {}},
        "not json at all",
    ],
)
async def test_first_frame_must_be_connect(nursery: trio.Nursery, first: object) -> None:
    server = await start_server(nursery)
    ws, _ = await open_challenged(server)
    await ws.send_text(first if isinstance(first, str) else json.dumps(first))
    if isinstance(first, dict) and "id" in first:
        response = await ws.receive_json()
        assert response == {
            "type": "res",
            "id": "1:x",
            "ok": False,
            "error": {
                "code": "INVALID_REQUEST",
                "message": "invalid handshake: first request must be connect",
            },
        }
    closed = await ws.wait_closed()
    assert closed.code == 1008


async def test_protocol_mismatch_closes_1002(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    ws, _ = await open_challenged(server)
    frame = connect_frame()
    frame["params"].update(minProtocol=5, maxProtocol=6)
    await ws.send_json(frame)
    response = await ws.receive_json()
    assert response["error"]["code"] == "INVALID_REQUEST"
    assert response["error"]["message"] == "protocol mismatch"
    assert response["error"]["details"] == {"expectedProtocol": 4}
    assert (await ws.wait_closed()).code == 1002


async def test_bad_connect_params_name_the_field(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    ws, _ = await open_challenged(server)
    frame = connect_frame()
    del frame["params"]["client"]["version"]
    await ws.send_json(frame)
    response = await ws.receive_json()
    assert "client.version" in response["error"]["message"]
    assert (await ws.wait_closed()).code == 1008


@pytest.mark.parametrize("token", ["wrong-token", None])
async def test_bad_or_missing_token(nursery: trio.Nursery, token: str | None) -> None:
    server = await start_server(nursery)
    ws, _ = await open_challenged(server)
    await ws.send_json(connect_frame(token=token))
    response = await ws.receive_json()
    error = response["error"]
    assert response["ok"] is False
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"].startswith("unauthorized: gateway token mismatch")
    assert error["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    closed = await ws.wait_closed()
    assert closed.code == 1008
    assert closed.reason.startswith("unauthorized: gateway token mismatch")


async def test_rate_limit_is_shared_with_http(nursery: trio.Nursery) -> None:
    limit = {"maxAttempts": 2, "windowMs": 60000, "lockoutMs": 60000, "exemptLoopback": False}
    server = await start_server(nursery, {"gateway": {"auth": {"rateLimit": limit}}})
    async with httpx.AsyncClient(base_url=server.url) as client:
        wrong = {"Authorization": "Bearer nope"}
        assert (await client.get("/v1/models", headers=wrong)).status_code == 401
        assert (await client.get("/v1/models", headers=wrong)).status_code == 401  # locks out
        ws, _ = await open_challenged(server)
        await ws.send_json(connect_frame(token="nope"))  # refused: locked out
        error = (await ws.receive_json())["error"]
        assert error["details"]["code"] == "AUTH_RATE_LIMITED"
        assert error["retryAfterMs"] > 0
        assert (await client.get("/v1/models", headers=AUTH)).status_code == 429


async def test_handshake_timeout_closes_1008(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    shorten(server, handshake_timeout=0.1)
    ws, _ = await open_challenged(server)
    with trio.fail_after(2):
        closed = await ws.wait_closed()
    assert (closed.code, closed.reason) == (1008, "handshake timeout")


async def test_oversized_frame_before_handshake_closes_1009(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    ws, _ = await open_challenged(server)
    frame = connect_frame()
    frame["params"]["padding"] = "x" * (64 * 1024)
    await ws.send_json(frame)
    assert (await ws.wait_closed()).code == 1009


async def test_oversized_frame_after_handshake_closes_1009(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    shorten(server, max_payload=200 * 1024)
    operator = await Operator.open(server.url)
    # Over the pre-handshake limit, under maxPayload: fine once connected.
    response = await operator.call("health", {"padding": "x" * (100 * 1024)})
    assert response["ok"] is True
    await operator.send("health", {"padding": "x" * (200 * 1024)})
    assert (await operator.ws.wait_closed()).code == 1009


async def test_tick_events_and_server_pings(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, hypercorn_options={"websocket_ping_interval": 0.02})
    shorten(server, tick_interval=0.02)
    operator = await Operator.open(server.url)
    first = await operator.event("tick")
    second = await operator.event("tick")
    assert set(first["payload"]) == {"ts"}
    assert second["seq"] > first["seq"] >= 1
    assert operator.ws.pings >= 1


async def test_after_connect_a_second_connect_is_refused(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    operator = await Operator.open(server.url)
    response = await operator.call("connect", connect_params())
    assert response["error"]["code"] == "INVALID_REQUEST"
    assert (await operator.call("health"))["ok"] is True


async def test_missing_scope_is_forbidden(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    operator = await Operator.open(server.url, scopes=["operator.read"])
    response = await operator.call("chat.abort", {"sessionKey": "agent:main:main"})
    assert response["error"] == {
        "code": "FORBIDDEN",
        "message": "missing scope: operator.write",
        "details": {"code": "MISSING_SCOPE", "missingScope": "operator.write"},
    }
    assert (await operator.call("sessions.reset", {"key": "k"}))["error"]["code"] == "FORBIDDEN"
    assert (await operator.call("status"))["ok"] is True


async def test_bad_params_and_unknown_method(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    operator = await Operator.open(server.url)
    unknown = await operator.call("no.such.method", {})
    assert unknown["error"] == {
        "code": "INVALID_REQUEST",
        "message": "unknown method: no.such.method",
    }
    bad = await operator.call("chat.history", {"sessionKey": "k", "limit": "ten"})
    assert bad["error"]["code"] == "INVALID_REQUEST"
    assert bad["error"]["details"] == {"field": "limit"}
    missing = await operator.call("agent", {"message": "hi"})
    assert "idempotencyKey" in missing["error"]["message"]


async def test_http_and_websocket_on_one_port_at_once(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    operator = await Operator.open(server.url)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        body = {"model": "openclaw", "messages": [{"role": "user", "content": "hello there"}]}
        async with trio.open_nursery() as both:
            results: dict[str, object] = {}

            async def http() -> None:
                results["http"] = (await client.post("/v1/chat/completions", json=body)).json()

            async def ws() -> None:
                results["ws"] = await operator.call("models.list")

            both.start_soon(http)
            both.start_soon(ws)
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/")).status_code == 404
    http_reply = results["http"]
    assert isinstance(http_reply, dict)
    assert http_reply["choices"][0]["message"]["content"] == "hello there"
    ws_reply = results["ws"]
    assert isinstance(ws_reply, dict)
    assert {"id": "echo", "name": "Echo", "provider": "echo"} in ws_reply["payload"]["models"]
    assert TOKEN  # the same secret serves both


async def test_a_reload_reaches_websocket_clients(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    operator = await Operator.open(server.url)
    reloaded = settings_from(
        {
            "agents": {"list": [{"id": "main"}, {"id": "ops", "name": "Ops"}]},
            "models": {"providers": {"p": {"models": [{"id": "m1", "contextWindow": 1000}]}}},
        },
        ("p",),
    )
    server.gateway.reload(reloaded)
    agents = (await operator.call("agents.list"))["payload"]["agents"]
    assert [a["id"] for a in agents] == ["main", "ops"]
    models = (await operator.call("models.list"))["payload"]["models"]
    assert models[0] == {"id": "m1", "name": "m1", "provider": "p", "contextWindow": 1000}
