"""``gateway.trustedProxies`` against the real server: the test client plays a proxy on
127.0.0.1 that forwards for clients elsewhere (``X-Forwarded-For`` / ``X-Real-IP``).

- Forwarded clients have their own rate-limit buckets on the Quart and the direct routes and
  over WebSocket, and a forwarded client that is not on loopback is not exempt.
- Without the key the headers change nothing; malformed ones fall back to the proxy's address.
- Mode ``none`` refuses forwarded clients beyond loopback; the access log names the client; a
  reload changes the list for new requests.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
import trio

from gateway.logs import TextFormatter
from tests.harness import AUTH, TOKEN, settings_from, start_server
from tests.ws.wsclient import WsClient, connect_params

PROXY = ["127.0.0.1"]
LIMIT = {"maxAttempts": 2, "windowMs": 60_000, "lockoutMs": 60_000, "exemptLoopback": True}
STRICT = {**LIMIT, "exemptLoopback": False}
WRONG = {"Authorization": "Bearer wrong"}
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def config(trusted: list[str] | None, limit: dict[str, Any] | None = LIMIT) -> dict[str, Any]:
    gateway: dict[str, Any] = {"auth": {"rateLimit": limit} if limit is not None else {}}
    if trusted is not None:
        gateway["trustedProxies"] = trusted
    return {"gateway": gateway}


def via(client: str) -> dict[str, str]:
    return {"X-Forwarded-For": client}


async def models(http: httpx.AsyncClient, headers: Any) -> int:
    return (await http.get("/v1/models", headers=headers)).status_code


async def chat(http: httpx.AsyncClient, headers: Any) -> int:
    return (await http.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code


async def ws_connect(url: str, token: str, headers: dict[str, str] | None = None) -> str:
    """A WebSocket handshake through the "proxy": ``ok``, or the refusal's ``details.code``."""
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    ws = await WsClient.connect(url, headers=raw)
    try:
        await ws.receive_json()  # the challenge
        await ws.send_json(
            {"type": "req", "id": "1:a", "method": "connect", "params": connect_params(token=token)}
        )
        response = await ws.receive_json()
        if response["ok"]:
            await ws.send_close()
            return "ok"
        assert (await ws.wait_closed()).code == 1008
        return str(response["error"]["details"]["code"])
    finally:
        await ws.aclose()


async def test_forwarded_clients_have_their_own_buckets(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, config(PROXY))
    a, b = via("203.0.113.7"), via("198.51.100.1, 203.0.113.8")  # b: the rightmost untrusted
    async with httpx.AsyncClient(base_url=server.url) as http:
        # Not exempt, though the proxy's own address is loopback: two wrong secrets lock it out,
        assert [await models(http, {**WRONG, **a}) for _ in range(2)] == [401, 401]
        assert await models(http, {**AUTH, **a}) == 429
        assert await chat(http, {**AUTH, **a}) == 429  # on the direct route too
        # while another client behind the same proxy has its own bucket.
        assert await models(http, {**AUTH, **b}) == 200
        assert [await chat(http, {**WRONG, **b}) for _ in range(2)] == [401, 401]
        assert await chat(http, {**AUTH, **b}) == 429
        assert await models(http, {**AUTH, **b}) == 429
        # X-Real-IP when there is no X-Forwarded-For.
        c = {"X-Real-IP": "192.0.2.1"}
        assert [await models(http, {**WRONG, **c}) for _ in range(3)] == [401, 401, 429]
        # The proxy itself, and a client it forwards from loopback, stay exempt.
        for headers in ({}, via("::1"), via("127.0.0.5:4000")):
            assert [await models(http, {**WRONG, **headers}) for _ in range(3)] == [401] * 3
            assert await chat(http, {**AUTH, **headers}) == 200


async def test_without_the_key_forwarded_headers_change_nothing(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    exempt = await start_server(nursery, config(None))
    strict = await start_server(nursery, config(None, STRICT))
    async with httpx.AsyncClient(base_url=exempt.url) as http:
        # Still the loopback peer, so still exempt.
        statuses = [await models(http, {**WRONG, **via("203.0.113.7")}) for _ in range(4)]
        assert statuses == [401] * 4
    async with httpx.AsyncClient(base_url=strict.url) as http:
        # One bucket, whatever address each request claims.
        assert await models(http, {**WRONG, **via("203.0.113.1")}) == 401
        assert await chat(http, {**WRONG, "X-Real-IP": "203.0.113.2"}) == 401
        assert await models(http, {**AUTH, **via("203.0.113.3")}) == 429
    await trio.testing.wait_all_tasks_blocked()
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 7 and {r.client for r in lines} == {"127.0.0.1"}


async def test_malformed_headers_fall_back_to_the_proxy(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, config(PROXY, {**STRICT, "maxAttempts": 5}))
    malformed: list[list[tuple[bytes, bytes]]] = [
        [(b"x-forwarded-for", b"unknown")],
        [(b"x-forwarded-for", b"_hidden, 203.0.113.9:99999")],
        [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"\xff\xfe")],
        [(b"x-real-ip", b"203.0.113.7"), (b"x-real-ip", b"203.0.113.8")],
        [(b"x-forwarded-for", b",, ,"), (b"x-real-ip", b"nonsense")],
    ]
    async with httpx.AsyncClient(base_url=server.url) as http:
        for headers in malformed:
            wrong = [(b"authorization", b"Bearer wrong"), *headers]
            assert await models(http, wrong) == 401, headers
        # All five were the proxy's attempts: the proxy is locked out now.
        assert await chat(http, AUTH) == 429


async def test_access_log_names_the_forwarded_client(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    server = await start_server(nursery, config(PROXY))
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        assert await chat(http, via("203.0.113.7")) == 200
        assert await models(http, via("198.51.100.1, [2001:DB8::7]:443")) == 200
        assert (await http.get("/health")).status_code == 200
    await trio.testing.wait_all_tasks_blocked()
    lines = {r.path: r for r in caplog.records if r.name == "gateway.access"}
    assert lines["/v1/chat/completions"].client == "203.0.113.7"
    assert lines["/v1/models"].client == "2001:db8::7"
    assert lines["/health"].client == "127.0.0.1"
    assert " client=203.0.113.7 " in TextFormatter().format(lines["/v1/chat/completions"])


async def test_websocket_handshake_uses_the_forwarded_address(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, config(PROXY))
    a, b = via("203.0.113.7"), via("203.0.113.8")
    assert [await ws_connect(server.url, "nope", a) for _ in range(2)] == [
        "AUTH_TOKEN_MISMATCH",
        "AUTH_TOKEN_MISMATCH",
    ]
    assert await ws_connect(server.url, TOKEN, a) == "AUTH_RATE_LIMITED"
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert await models(http, {**AUTH, **a}) == 429  # one limiter for HTTP and WebSocket
    assert await ws_connect(server.url, TOKEN, b) == "ok"
    # The proxy itself is loopback, and exempt.
    for _ in range(3):
        assert await ws_connect(server.url, "nope") == "AUTH_TOKEN_MISMATCH"
    assert await ws_connect(server.url, TOKEN) == "ok"


async def test_mode_none_refuses_forwarded_clients_beyond_loopback(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(
        nursery, {"gateway": {"trustedProxies": PROXY, "auth": {"mode": "none"}}}
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert await models(http, {}) == 200
        assert await models(http, via("127.0.0.1")) == 200
        assert await models(http, via("203.0.113.7")) == 401
        assert await chat(http, via("203.0.113.7")) == 401
    assert await ws_connect(server.url, "", via("203.0.113.7")) == "AUTH_TOKEN_MISMATCH"
    assert await ws_connect(server.url, "") == "ok"


async def test_a_reload_changes_the_trusted_proxies(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, config(None, STRICT))
    a, b = via("203.0.113.7"), via("203.0.113.8")
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert [await models(http, {**WRONG, **a}) for _ in range(2)] == [401, 401]
        assert await models(http, {**AUTH, **b}) == 429  # the headers were ignored
        server.gateway.reload(settings_from(config(PROXY, STRICT)))
        assert [await models(http, {**WRONG, **a}) for _ in range(2)] == [401, 401]
        assert await models(http, {**AUTH, **a}) == 429
        assert await models(http, {**AUTH, **b}) == 200
