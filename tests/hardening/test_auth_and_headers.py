"""Authentication under pressure and the security headers on every kind of response.

- A flood of concurrent wrong secrets (HTTP on several routes and WebSocket ``connect`` frames
  at once, loopback not exempt): exactly ``maxAttempts`` plain refusals, then 429 with
  ``Retry-After`` (and ``AUTH_RATE_LIMITED`` over WebSocket) for everything else, the right
  secret included; another client address is not affected.
- WebSocket handshakes without a valid secret, in every shape: an error response, then 1008.
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` on 200 JSON, SSE, 204,
  400, 401, 404 (text), 405, 408, 413, 429, both kinds of 500, and the WebSocket upgrade.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from typing import Any

import pytest
import trio

from gateway.providers.base import Emit, ModelRequest
from tests.hardening.support import (
    SECURITY_HEADERS,
    RawResponse,
    assert_error_shape,
    check_gateway_response,
    exchange,
    open_stream,
    read_response,
    request_bytes,
)
from tests.harness import TOKEN, Server, start_server
from tests.ws.wsclient import WsClient, connect_params

LOCKOUT_S = 30
LIMIT = {"maxAttempts": 5, "windowMs": 60_000, "lockoutMs": LOCKOUT_S * 1000,
         "exemptLoopback": False}  # fmt: skip
WRONG = [(b"Authorization", b"Bearer wrong-secret")]
BODY = b'{"messages": [{"role": "user", "content": "hi"}]}'
HTTP_TARGETS = [
    ("POST", "/v1/chat/completions", BODY),
    ("GET", "/v1/models", b""),
    ("GET", "/sessions/k/history", b""),
    ("POST", "/sessions/k/kill", b""),
]


async def http_attempt(
    url: str, method: str, path: str, body: bytes, headers: list[tuple[bytes, bytes]],
    local: str | None = None,
) -> RawResponse:  # fmt: skip
    parts = url.rsplit(":", 1)
    stream = await trio.open_tcp_stream(
        parts[0].removeprefix("http://"), int(parts[1]), local_address=local
    )
    async with stream:
        await stream.send_all(request_bytes(method, path, headers, body))
        response = await read_response(stream, method)
    assert response is not None
    return response


async def ws_attempt(url: str, token: str) -> str:
    """A WebSocket handshake with ``token``: the error's ``details.code`` (close 1008 after)."""
    ws = await WsClient.connect(url)
    try:
        await ws.receive_json()
        await ws.send_json(
            {"type": "req", "id": "1:a", "method": "connect", "params": connect_params(token=token)}
        )
        response = await ws.receive_json()
        assert response["ok"] is False, response
        closed = await ws.wait_closed()
        assert closed.code == 1008, closed
        return str(response["error"]["details"]["code"])
    finally:
        await ws.aclose()


async def test_flood_of_wrong_secrets_locks_out_with_429(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, {"gateway": {"auth": {"rateLimit": LIMIT}}})
    http: list[RawResponse] = []
    ws: list[str] = []

    async def one_http(i: int) -> None:
        method, path, body = HTTP_TARGETS[i % len(HTTP_TARGETS)]
        http.append(await http_attempt(server.url, method, path, body, WRONG))

    async def one_ws() -> None:
        ws.append(await ws_attempt(server.url, "wrong-secret"))

    with trio.fail_after(20):
        async with trio.open_nursery() as flood:
            for i in range(100):
                flood.start_soon(one_http, i)
                if i % 5 == 0:
                    flood.start_soon(one_ws)
    statuses = Counter(r.status for r in http)
    assert set(statuses) <= {401, 429}, statuses
    refused = statuses[401] + ws.count("AUTH_TOKEN_MISMATCH")
    locked = statuses[429] + ws.count("AUTH_RATE_LIMITED")
    # The count is exact under concurrency: the check and the count are one step.
    assert refused == LIMIT["maxAttempts"], (statuses, Counter(ws))
    assert locked == 120 - refused
    for response in http:
        check_gateway_response(response, chat=False)
        if response.status == 429:
            assert response.json()["error"]["type"] == "rate_limited"
            assert 1 <= int(response.headers["retry-after"]) <= LOCKOUT_S
    # Locked out: the right secret and no secret wait too, over HTTP and WebSocket.
    right = [(b"Authorization", f"Bearer {TOKEN}".encode())]
    for headers in (right, []):
        response = await http_attempt(server.url, "GET", "/v1/models", b"", headers)
        assert response.status == 429, response
    assert await ws_attempt(server.url, TOKEN) == "AUTH_RATE_LIMITED"
    # Per client address: another loopback address is not locked out.
    other = await http_attempt(server.url, "GET", "/v1/models", b"", right, local="127.0.0.2")
    assert other.status == 200, other
    # Unauthenticated routes stay open.
    health = await http_attempt(server.url, "GET", "/health", b"", [])
    assert health.status == 200


AUTH_SHAPES: list[Any] = [
    pytest.param(None, id="no-auth"),
    pytest.param({}, id="empty-auth"),
    pytest.param({"token": "wrong"}, id="wrong-token"),
    pytest.param({"token": ""}, id="empty-token"),
    pytest.param({"token": 123}, id="number-token"),
    pytest.param({"token": None}, id="null-token"),
    pytest.param({"token": [TOKEN]}, id="list-token"),
    pytest.param({"token": TOKEN + "\u0000"}, id="token-with-nul"),
    pytest.param({"token": TOKEN.upper()}, id="token-other-case"),
    pytest.param({"password": TOKEN}, id="password-in-token-mode"),
    pytest.param(TOKEN, id="auth-is-a-string"),
    pytest.param("header-only", id="bearer-header-on-the-upgrade-only"),
]


@pytest.mark.parametrize("auth", AUTH_SHAPES)
async def test_websocket_handshake_without_valid_auth_closes_1008(
    nursery: trio.Nursery, auth: Any
) -> None:
    server = await start_server(nursery)
    ws = await WsClient.connect(server.url)
    if auth == "header-only":
        # An Authorization header on the upgrade does not authenticate: the secret belongs
        # in the connect frame.
        await ws.aclose()
        ws = await connect_with_header(server.url)
    try:
        await ws.receive_json()
        params = connect_params(token=None)
        if auth is not None and auth != "header-only":
            params["auth"] = auth
        await ws.send_json({"type": "req", "id": "1:a", "method": "connect", "params": params})
        with trio.fail_after(5):
            response = await ws.receive_json()
            closed = await ws.wait_closed()
        assert response["ok"] is False and response["error"]["code"] == "INVALID_REQUEST"
        assert closed.code == 1008, closed
    finally:
        await ws.aclose()
    # The refused connection left nothing: the server serves the next client.
    ok = await http_attempt(server.url, "GET", "/health", b"", [])
    assert ok.status == 200


async def test_websocket_in_password_mode_wants_the_password(nursery: trio.Nursery) -> None:
    config = {"gateway": {"auth": {"mode": "password", "token": None, "password": "pw"}}}
    server = await start_server(nursery, config)
    assert await ws_attempt(server.url, "pw") in ("AUTH_PASSWORD_MISMATCH", "AUTH_TOKEN_MISMATCH")


async def connect_with_header(url: str) -> WsClient:
    """A WebSocket upgrade that carries ``Authorization: Bearer <token>``."""
    from urllib.parse import urlsplit

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    conn = WSConnection(ConnectionType.CLIENT)
    request = Request(
        host=parts.netloc,
        target="/",
        extra_headers=[(b"authorization", f"Bearer {TOKEN}".encode())],
    )
    await stream.send_all(conn.send(request))
    while True:
        conn.receive_data(await stream.receive_some(65536))
        for event in conn.events():
            if isinstance(event, AcceptConnection):
                return WsClient(stream, conn)


# Security headers


class Crashing:
    """A provider with a bug: the run fails with a 500 (the gateway's ``GatewayError``)."""

    id = "crashing"

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        raise RuntimeError("a provider bug")

    async def aclose(self) -> None:
        return None


async def test_security_headers_on_every_kind_of_response(nursery: trio.Nursery) -> None:
    config = {
        "gateway": {
            "auth": {"rateLimit": {**LIMIT, "maxAttempts": 1}},
            "http": {
                "bodyTimeoutSeconds": 1,
                "cors": {"allowOrigins": ["https://app.example"]},
                "endpoints": {"chatCompletions": {"maxBodyBytes": 4096}},
            },
        },
        "agents": {"list": [{"id": "main"}, {"id": "broken", "model": "crashing/m"}]},
    }
    server = await start_server(nursery, config, providers={"crashing": Crashing()})

    async def boom() -> Any:
        raise RuntimeError("a route bug")

    server.gateway.quart.view_functions["models"] = boom  # an unhandled exception in a route
    right = [(b"Authorization", f"Bearer {TOKEN}".encode())]
    json_type = [(b"Content-Type", b"application/json")]
    send = partial(raw, server)
    kinds = {
        "200 json": await send("POST", "/v1/chat/completions", right, BODY),
        "200 sse": await send(
            "POST", "/v1/chat/completions", right, BODY[:-1] + b', "stream": true}'
        ),
        "200 head": await send("HEAD", "/health", [], b""),
        "204 preflight": await send(
            "OPTIONS",
            "/v1/chat/completions",
            [(b"Origin", b"https://app.example"), (b"Access-Control-Request-Method", b"POST")],
            b"",
        ),
        "400": await send("POST", "/v1/chat/completions", right + json_type, b"{"),
        "404 text": await send("GET", "/nowhere", [], b""),
        "405": await send("GET", "/v1/chat/completions", [], b""),
        "413": await send("POST", "/v1/chat/completions", right, b" " * 5000),
        "408": await trickled(server, right),
        "500 run": await send(
            "POST", "/v1/chat/completions", [*right, (b"x-openclaw-agent-id", b"broken")], BODY
        ),
        "500 unhandled": await send("GET", "/v1/models", right, b""),
        "401": await send("GET", "/v1/models/openclaw", [(b"Authorization", b"Bearer x")], b""),
        "429": await send("GET", "/v1/models/openclaw", [(b"Authorization", b"Bearer x")], b""),
    }
    statuses = {kind: response.status for kind, response in kinds.items()}
    assert statuses == {kind: int(kind[:3]) for kind in kinds}, str(statuses)
    for kind, response in kinds.items():
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (kind, response.headers)
        if response.status >= 400 and response.status != 404:
            assert_error_shape(response.json())
    assert b"a route bug" not in kinds["500 unhandled"].body
    assert b"a provider bug" not in kinds["500 run"].body
    assert json.loads(kinds["500 unhandled"].body)["error"]["type"] == "server_error"


async def test_security_headers_on_the_websocket_upgrade(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with await open_stream(server.url) as stream:
        await stream.send_all(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in head:
                head += await stream.receive_some(4096)
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 101")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, headers


async def raw(
    server: Server, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> RawResponse:
    with trio.fail_after(5):
        response = await exchange(
            server.url, request_bytes(method, path, headers, body), method=method
        )
    assert response is not None
    return response


async def trickled(server: Server, headers: list[tuple[bytes, bytes]]) -> RawResponse:
    """A body that does not arrive within ``bodyTimeoutSeconds``: 408."""
    async with await open_stream(server.url) as stream:
        head = request_bytes("POST", "/v1/chat/completions", headers, b"", content_length=False)
        await stream.send_all(head[:-2] + b"Content-Length: 100\r\n\r\n{")
        with trio.fail_after(5):
            response = await read_response(stream)
    assert response is not None
    return response


async def test_wrong_secret_rate_limit_is_not_triggered_by_missing_secrets(
    nursery: trio.Nursery,
) -> None:
    """A flood without any secret is no attempt at guessing: never a lockout."""
    server = await start_server(nursery, {"gateway": {"auth": {"rateLimit": LIMIT}}})
    results: list[int] = []

    async def one() -> None:
        response = await http_attempt(server.url, "GET", "/v1/models", b"", [])
        results.append(response.status)

    async with trio.open_nursery() as flood:
        for _ in range(50):
            flood.start_soon(one)
    assert Counter(results) == {401: 50}
    ok = await http_attempt(
        server.url, "GET", "/v1/models", b"", [(b"Authorization", f"Bearer {TOKEN}".encode())]
    )
    assert ok.status == 200
