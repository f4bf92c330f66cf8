"""Hypercorn's WebSocket stream closing on protocol errors: the pure parts on wsproto alone,
the subclass on Hypercorn's real ``WSStream`` with a recording ``send`` (no sockets), and
``install``."""

from __future__ import annotations

import logging
from typing import Any

import hypercorn.protocol.h2
import hypercorn.protocol.h11
import pytest
from hypercorn.config import Config
from hypercorn.protocol.events import Data, StreamClosed
from hypercorn.protocol.ws_stream import WSStream
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

from gateway.ws.hypercorn_stream import ClosingWSStream, FailureWatch, failure_close, install
from tests.ws.wsclient import BROKEN_FRAMES, client_frame


def server_connection() -> Connection:
    return Connection(ConnectionType.SERVER)


def client_close(code: int = 1000) -> bytes:
    return client_frame(0x8, code.to_bytes(2, "big") + b"bye")


def server_close_code(data: bytes) -> int:
    """The code of the one server close frame in ``data``."""
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(data)
    (event,) = client.events()
    assert isinstance(event, CloseConnection)
    return event.code


@pytest.mark.parametrize("broken", BROKEN_FRAMES)
def test_a_protocol_error_is_held_back_with_the_close_it_calls_for(broken: str) -> None:
    raw, code = BROKEN_FRAMES[broken]
    connection = server_connection()
    watch = FailureWatch(connection)
    watch.receive_data(client_frame(0x1, b"before") + raw)
    events = list(watch.events())
    assert events == [TextMessage(data="before", frame_finished=True, message_finished=True)]
    assert watch.close is not None and watch.close.code == code
    assert watch.state is ConnectionState.OPEN
    # What the stream then sends: the close frame with wsproto's code.
    assert server_close_code(watch.send(watch.close)) == code
    assert connection.state is ConnectionState.LOCAL_CLOSING


def test_the_peer_close_is_not_a_failure() -> None:
    connection = server_connection()
    watch = FailureWatch(connection)
    watch.receive_data(client_frame(0x9, b"hi") + client_close(1001))
    events = list(watch.events())
    assert events == [Ping(payload=b"hi"), CloseConnection(code=1001, reason="bye")]
    assert watch.close is None
    assert connection.state is ConnectionState.REMOTE_CLOSING


def test_the_peer_answering_our_close_is_not_a_failure() -> None:
    connection = server_connection()
    connection.send(CloseConnection(code=1000))
    connection.receive_data(client_close(1000))
    (event,) = connection.events()
    assert failure_close(event, connection.state) is None
    assert connection.state is ConnectionState.CLOSED


def test_an_error_after_our_close_needs_no_second_close() -> None:
    connection = server_connection()
    connection.send(CloseConnection(code=1009))
    connection.receive_data(BROKEN_FRAMES["unknown opcode 0x3"][0])
    (event,) = connection.events()
    assert isinstance(event, CloseConnection) and event.code == 1002
    assert failure_close(event, connection.state) is None


def test_a_lost_transport_is_not_a_failure() -> None:
    connection = server_connection()
    connection.receive_data(None)
    (event,) = connection.events()
    assert failure_close(event, connection.state) is None


def test_a_failure_keeps_wsproto_code_and_reason() -> None:
    close = failure_close(CloseConnection(code=1007, reason="bad text"), ConnectionState.OPEN)
    assert close == CloseConnection(code=1007, reason="bad text")


class Recorder:
    """The ``send`` Hypercorn's protocol gives a stream, recording what the stream sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def __call__(self, event: Any) -> None:
        self.sent.append(event)


def connected_stream(cls: type[WSStream], config: Config | None = None) -> tuple[Any, Recorder]:
    """A stream of ``cls`` as it is once the app accepted the upgrade."""
    send = Recorder()
    stream: Any = cls(None, config or Config(), None, None, False, None, None, send, 1)
    stream.connection = server_connection()
    return stream, send


async def test_the_stream_sends_the_close_then_closes() -> None:
    stream, send = connected_stream(ClosingWSStream)
    connection = stream.connection
    connection.receive_data(BROKEN_FRAMES["invalid UTF-8 text"][0])
    await stream._handle_events()
    assert len(send.sent) == 2
    data, closed = send.sent
    assert isinstance(data, Data) and server_close_code(data.data) == 1007
    assert closed == StreamClosed(stream_id=1)
    assert stream.connection is connection


async def test_hypercorn_alone_closes_without_a_close_frame() -> None:
    # What ClosingWSStream is for: if Hypercorn ever sends the frame itself, this fails.
    stream, send = connected_stream(WSStream)
    stream.connection.receive_data(BROKEN_FRAMES["invalid UTF-8 text"][0])
    await stream._handle_events()
    assert send.sent == [StreamClosed(stream_id=1)]


async def test_the_message_size_close_stays_hypercorn_s() -> None:
    config = Config()
    config.websocket_max_message_size = 16
    stream, send = connected_stream(ClosingWSStream, config)
    stream.connection.receive_data(client_frame(0x1, b"x" * 17))
    await stream._handle_events()
    # 1009, then Hypercorn waits for the client's close before closing the stream.
    (data,) = send.sent
    assert isinstance(data, Data) and server_close_code(data.data) == 1009
    stream.connection.receive_data(client_close(1009))
    await stream._handle_events()
    assert send.sent[1:] == [StreamClosed(stream_id=1)]


async def test_the_real_connection_is_back_when_hypercorn_s_loop_raises() -> None:
    stream, _ = connected_stream(ClosingWSStream)
    connection = stream.connection

    async def app_put(message: object) -> None:
        raise RuntimeError("the app's queue is gone")

    stream.app_put = app_put
    connection.receive_data(client_frame(0x1, b"hi"))
    with pytest.raises(RuntimeError):
        await stream._handle_events()
    assert stream.connection is connection


def test_install_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hypercorn.protocol.h11, "WSStream", WSStream)
    monkeypatch.setattr(hypercorn.protocol.h2, "WSStream", WSStream)
    assert install() and install()
    assert hypercorn.protocol.h11.WSStream is ClosingWSStream
    assert hypercorn.protocol.h2.WSStream is ClosingWSStream


class Foreign(WSStream):
    pass


def _loop_without_events(self: WSStream) -> None:
    return None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (("h2", "WSStream", Foreign), "hypercorn.protocol.h2.WSStream is not"),
        (("class", "_send_wsproto_event", None), "WSStream._send_wsproto_event missing"),
        (("class", "_handle_events", _loop_without_events), "no longer uses connection, events"),
    ],
)
def test_install_leaves_an_unexpected_hypercorn_alone(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    change: tuple[str, str, Any],
    problem: str,
) -> None:
    monkeypatch.setattr(hypercorn.protocol.h11, "WSStream", WSStream)
    monkeypatch.setattr(hypercorn.protocol.h2, "WSStream", WSStream)
    where, name, value = change
    if where == "h2":
        monkeypatch.setattr(hypercorn.protocol.h2, name, value)
    elif value is None:
        monkeypatch.delattr(WSStream, name)
    else:
        monkeypatch.setattr(WSStream, name, value)
    with caplog.at_level(logging.WARNING, logger="gateway.ws"):
        assert not install()
    assert hypercorn.protocol.h11.WSStream is WSStream
    assert problem in caplog.text
    assert "without a close frame" in caplog.text
