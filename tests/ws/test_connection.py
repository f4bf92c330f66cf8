"""A connection driven without sockets (a fake of Quart's websocket), and its helpers."""

from __future__ import annotations

import json
from typing import Any

import trio

from gateway.app import create_app
from gateway.sessions.admission import LocalAdmission
from gateway.ws.connection import Connection, only_cancelled
from gateway.ws.server import WebSocketGateway
from tests.harness import TOKEN, settings_from
from tests.memory_store import MemoryResponses, MemoryStore
from tests.ws.test_health import assert_health_shape
from tests.ws.wsclient import connect_params


async def test_only_cancelled() -> None:
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(1)
        except trio.Cancelled as error:
            caught.append(error)
            raise
    [cancelled] = caught
    assert only_cancelled(cancelled)
    assert only_cancelled(BaseExceptionGroup("g", [cancelled]))
    assert not only_cancelled(BaseExceptionGroup("g", [cancelled, ValueError()]))
    assert not only_cancelled(ValueError())
    assert not only_cancelled(None)


class FakeWebsocket:
    """Quart's ``Websocket`` as a connection uses it: ``events`` records what the server wrote
    (``("send", frame)`` and ``("close", code, reason)``), in order; ``client`` feeds frames."""

    def __init__(self) -> None:
        self.scope = {"client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 18789)}
        self.events: list[tuple[Any, ...]] = []
        self.client, self._incoming = trio.open_memory_channel[str](16)
        self._grew = trio.Event()

    async def written(self, count: int) -> list[tuple[Any, ...]]:
        """Wait until the server has written ``count`` things; the first ``count``."""
        while len(self.events) < count:
            await self._grew.wait()
        return self.events[:count]

    async def accept(self) -> None:
        return None

    async def receive(self) -> str:
        return await self._incoming.receive()

    async def send(self, text: str) -> None:
        self._record(("send", json.loads(text)))

    async def close(self, code: int, reason: str) -> None:
        self._record(("close", code, reason))

    def _record(self, event: tuple[Any, ...]) -> None:
        self.events.append(event)
        self._grew.set()
        self._grew = trio.Event()


def gateway() -> WebSocketGateway:
    return create_app(
        settings_from(),
        transcripts=MemoryStore(),
        admission=LocalAdmission(4),
        responses=MemoryResponses(),
    ).ws


def connect(token: str = TOKEN) -> str:
    return json.dumps(
        {"type": "req", "id": "1:c", "method": "connect", "params": connect_params(token=token)}
    )


async def test_refused_connect_is_answered_before_the_close_and_the_close_is_awaited(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The response goes out before the close frame, and the connection (so the TCP
    connection) stays until the client answers the close: a client that drops the socket
    first would lose frames it has not handled yet."""
    server = gateway()
    websocket = FakeWebsocket()
    connection = Connection(server, websocket)  # type: ignore[arg-type]
    async with trio.open_nursery() as handler:  # quart-trio's nursery around the handler
        handler.start_soon(connection.serve)
        await websocket.client.send(connect("wrong"))
        written = await websocket.written(3)
        assert [event[0] for event in written] == ["send", "send", "close"]
        challenge, refusal = (event[1] for event in websocket.events[:2])
        assert challenge["event"] == "connect.challenge"
        assert refusal["id"] == "1:c" and refusal["ok"] is False
        assert refusal["error"]["details"]["code"] == "AUTH_TOKEN_MISMATCH"
        assert websocket.events[2][1] == 1008
        # The client is still reading: the connection waits for its close frame...
        await trio.sleep(server.policy.close_timeout / 2)
        assert not connection.closed.is_set()
        # ...and what it still sends meanwhile is not answered.
        await websocket.client.send(json.dumps({"type": "req", "id": "2", "method": "health"}))
        await trio.sleep(server.policy.close_timeout / 4)
        assert len(websocket.events) == 3 and not connection.closed.is_set()
        # Its close frame: quart-trio cancels the handler, which ends at once.
        handler.cancel_scope.cancel()
    assert connection.closed.is_set()
    assert len(websocket.events) == 3  # no goodbye after a close already written


async def test_the_wait_for_the_clients_close_is_bounded(autojump_clock: trio.abc.Clock) -> None:
    server = gateway()
    websocket = FakeWebsocket()
    connection = Connection(server, websocket)  # type: ignore[arg-type]
    await websocket.client.send(connect("wrong"))
    with trio.fail_after(server.policy.close_timeout + 1):
        await connection.serve()
    assert websocket.events[-1][0] == "close"
    assert trio.current_time() >= server.policy.close_timeout
    assert connection.closed.is_set()


async def test_hello_snapshot_carries_the_health_payload(autojump_clock: trio.abc.Clock) -> None:
    server = gateway()
    websocket = FakeWebsocket()
    connection = Connection(server, websocket)  # type: ignore[arg-type]
    async with trio.open_nursery() as handler:
        handler.start_soon(connection.serve)
        await websocket.client.send(connect())
        hello = (await websocket.written(2))[1][1]
        handler.cancel_scope.cancel()
    assert hello["ok"] is True
    assert_health_shape(hello["payload"]["snapshot"]["health"])
