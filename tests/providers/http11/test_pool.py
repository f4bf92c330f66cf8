"""The pool on loopback sockets: reuse, never reusing an abandoned connection, idle limits and
expiry, and connections found closed while idle."""

from __future__ import annotations

import h11
import trio
import trio.testing

from gateway.providers.http11 import ConnectionPool
from tests.providers.http11.support import (
    SSE_OK,
    answering,
    exchange,
    read_request,
    request_to,
    start_raw_server,
)


async def test_a_finished_exchange_is_reused_by_the_next(nursery: trio.Nursery) -> None:
    server = await start_raw_server(nursery, answering(SSE_OK, SSE_OK, SSE_OK))
    pool = ConnectionPool()
    reused = [(await exchange(pool, server.url))[2] for _ in range(3)]
    assert reused == [False, True, True]
    assert (server.accepted, pool.idle_count) == (1, 1)
    pool.close()
    assert pool.idle_count == 0


async def test_an_abandoned_exchange_is_closed_not_reused(nursery: trio.Nursery) -> None:
    """A body not read to its end: released, the connection is closed (the server sees EOF)
    and the next request opens a new one."""
    eof_seen = trio.Event()

    async def slow_body(stream: trio.abc.Stream) -> None:
        if await read_request(stream, h11.Connection(h11.SERVER)) is None:
            return
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst part")
        while await stream.receive_some(65536):
            pass
        eof_seen.set()

    server = await start_raw_server(nursery, slow_body)
    pool = ConnectionPool()
    request = request_to(server.url)
    connection = await pool.connect(request.route)
    await connection.send_request(request)
    await connection.receive_response()
    assert await connection.receive_data() == b"first part"
    pool.release(request.route, connection)
    assert pool.idle_count == 0
    with trio.fail_after(5):
        await eof_seen.wait()
    assert pool.take_idle(request.route) is None


async def test_a_cancelled_exchange_is_not_reusable(nursery: trio.Nursery) -> None:
    server = await start_raw_server(nursery, answering())  # never answers
    pool = ConnectionPool()
    request = request_to(server.url)
    connection = await pool.connect(request.route)
    with trio.move_on_after(0.05):
        await connection.send_request(request)
        await connection.receive_response()
    assert not connection.reusable
    pool.release(request.route, connection)
    assert pool.idle_count == 0


async def test_idle_connections_expire(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start_raw_server(nursery, answering(SSE_OK, SSE_OK))
    pool = ConnectionPool(idle_expiry=30.0)
    await exchange(pool, server.url)
    await trio.sleep(29)
    assert pool.idle_count == 1
    assert (await exchange(pool, server.url))[2] is True  # still fresh after 29 s
    await trio.sleep(30)
    assert pool.take_idle(request_to(server.url).route) is None  # expired and closed
    assert pool.idle_count == 0


async def test_idle_connections_are_bounded(nursery: trio.Nursery) -> None:
    """Beyond ``max_idle``, the oldest idle connection is closed."""
    server = await start_raw_server(nursery, answering(SSE_OK))
    pool = ConnectionPool(max_idle=2)
    request = request_to(server.url)
    connections = [await pool.connect(request.route) for _ in range(3)]
    for connection in connections:
        await connection.send_request(request)
        await connection.receive_response()
        while await connection.receive_data() is not None:
            pass
    for connection in connections:
        pool.release(request.route, connection)
    assert pool.idle_count == 2
    assert not connections[0].looks_alive()  # closed: its socket is gone
    assert pool.take_idle(request.route) is connections[2]  # most recently used first
    assert pool.take_idle(request.route) is connections[1]
    pool.close()


async def test_an_idle_connection_closed_by_the_server_is_not_handed_out(
    nursery: trio.Nursery,
) -> None:
    server_closed = trio.Event()

    async def answer_then_close(stream: trio.abc.Stream) -> None:
        await read_request(stream, h11.Connection(h11.SERVER))
        await stream.send_all(SSE_OK)
        await stream.aclose()
        server_closed.set()

    server = await start_raw_server(nursery, answer_then_close)
    pool = ConnectionPool()
    await exchange(pool, server.url)
    assert pool.idle_count == 1
    await server_closed.wait()
    idle = pool._idle[0][1]
    with trio.fail_after(5):
        await trio.lowlevel.wait_readable(idle._socket)  # the server's FIN arrived
    assert pool.take_idle(request_to(server.url).route) is None
    assert pool.idle_count == 0


async def test_routes_do_not_share_connections(nursery: trio.Nursery) -> None:
    one = await start_raw_server(nursery, answering(SSE_OK, SSE_OK))
    two = await start_raw_server(nursery, answering(SSE_OK))
    pool = ConnectionPool()
    await exchange(pool, one.url)
    assert (await exchange(pool, two.url))[2] is False
    assert (await exchange(pool, one.url))[2] is True
    pool.close()


async def test_after_close_released_connections_are_closed(nursery: trio.Nursery) -> None:
    server = await start_raw_server(nursery, answering(SSE_OK))
    pool = ConnectionPool()
    pool.close()
    await exchange(pool, server.url)
    assert pool.idle_count == 0
