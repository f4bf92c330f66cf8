"""One connection's exchanges on loopback sockets: body framings, content decoding, interim
responses, what counts as reusable, and how failures are reported."""

from __future__ import annotations

import gzip

import pytest
import trio

from gateway.providers.http11 import ConnectionBroken, ConnectionPool, InvalidResponse
from tests.providers.http11.support import answering, exchange, request_to, start_raw_server

CHUNKED = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nx-trailer: t\r\n\r\n"
)
SIZED = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello world"
GZIPPED = gzip.compress(b"hello world")


@pytest.mark.parametrize("response", [CHUNKED, SIZED], ids=["chunked", "content-length"])
async def test_framed_bodies_keep_the_connection(nursery: trio.Nursery, response: bytes) -> None:
    server = await start_raw_server(nursery, answering(response, response))
    pool = ConnectionPool()
    assert await exchange(pool, server.url) == (200, b"hello world", False)
    assert await exchange(pool, server.url) == (200, b"hello world", True)
    assert server.accepted == 1
    pool.close()


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.0 200 OK\r\n\r\nhello world",
        b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello world",
    ],
    ids=["http-1.0", "connection-close"],
)
async def test_close_delimited_body_is_read_and_not_reused(
    nursery: trio.Nursery, response: bytes
) -> None:
    server = await start_raw_server(nursery, answering(response, then_close=True))
    pool = ConnectionPool()
    assert await exchange(pool, server.url) == (200, b"hello world", False)
    assert pool.idle_count == 0
    pool.close()


async def test_connection_close_with_a_length_is_not_reused(nursery: trio.Nursery) -> None:
    response = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    server = await start_raw_server(nursery, answering(response, response))
    pool = ConnectionPool()
    assert await exchange(pool, server.url) == (200, b"ok", False)
    assert await exchange(pool, server.url) == (200, b"ok", False)
    assert server.accepted == 2
    pool.close()


async def test_gzip_body_is_decoded(nursery: trio.Nursery) -> None:
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(GZIPPED)
        + GZIPPED
    )
    server = await start_raw_server(nursery, answering(response))
    pool = ConnectionPool()
    assert await exchange(pool, server.url) == (200, b"hello world", False)
    pool.close()


async def test_interim_responses_are_skipped(nursery: trio.Nursery) -> None:
    server = await start_raw_server(
        nursery, answering(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + SIZED)
    )
    pool = ConnectionPool()
    assert await exchange(pool, server.url) == (200, b"hello world", False)
    pool.close()


async def test_request_is_written_as_prepared(nursery: trio.Nursery) -> None:
    seen: list[bytes] = []

    async def record(stream: trio.abc.Stream) -> None:
        data = b""
        while not data.endswith(b'{"a": 1}'):
            data += await stream.receive_some(65536)
        seen.append(data)
        await stream.send_all(SIZED)

    server = await start_raw_server(nursery, record)
    pool = ConnectionPool()
    request = request_to(server.url, b'{"a": 1}')
    connection = await pool.connect(request.route)
    await connection.send_request(request)
    assert (await connection.receive_response()).status == 200
    connection.close()
    assert seen == [
        b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept-Encoding: identity\r\n"
        b"User-Agent: test\r\nContent-Length: 8\r\n\r\n"
        b'{"a": 1}' % server.port
    ]


OK = b"HTTP/1.1 200 OK\r\n"
BROKEN_OR_INVALID = {
    "nothing": (b"", ConnectionBroken),
    "cut-head": (OK + b"content-le", ConnectionBroken),
    "cut-sized-body": (OK + b"content-length: 50\r\n\r\nshort", ConnectionBroken),
    "cut-chunked-body": (OK + b"transfer-encoding: chunked\r\n\r\n5\r\nhel", ConnectionBroken),
    "not-http": (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", InvalidResponse),
    "two-lengths": (OK + b"content-length: 1\r\ncontent-length: 2\r\n\r\nok", InvalidResponse),
    "unknown-transfer-coding": (OK + b"transfer-encoding: gzip\r\n\r\n", InvalidResponse),
    "unknown-content-coding": (
        OK + b"content-encoding: br\r\ncontent-length: 2\r\n\r\nok",
        InvalidResponse,
    ),
    "not-gzip": (OK + b"content-encoding: gzip\r\ncontent-length: 2\r\n\r\nok", InvalidResponse),
    "bad-chunk-size": (OK + b"transfer-encoding: chunked\r\n\r\nzz\r\n", InvalidResponse),
}


@pytest.mark.parametrize("name", list(BROKEN_OR_INVALID))
async def test_broken_and_invalid_responses(nursery: trio.Nursery, name: str) -> None:
    response, error = BROKEN_OR_INVALID[name]
    server = await start_raw_server(nursery, answering(response, then_close=True))
    pool = ConnectionPool()
    with pytest.raises(error) as caught:
        await exchange(pool, server.url)
    if isinstance(caught.value, ConnectionBroken):
        assert caught.value.answered is (name != "nothing")
    assert pool.idle_count == 0
    pool.close()


async def test_reset_is_a_broken_connection(nursery: trio.Nursery) -> None:
    async def reset(stream: trio.abc.Stream) -> None:
        assert isinstance(stream, trio.SocketStream)
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\npart")
        stream.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        await stream.aclose()

    server = await start_raw_server(nursery, reset)
    pool = ConnectionPool()
    with pytest.raises(ConnectionBroken, match="reset") as caught:
        await exchange(pool, server.url)
    assert caught.value.answered
    pool.close()


async def test_bytes_beyond_the_answer_make_it_unreusable(nursery: trio.Nursery) -> None:
    server = await start_raw_server(nursery, answering(SIZED + b"HTTP/1.1 200 OK\r\n"))
    pool = ConnectionPool()
    assert await exchange(pool, server.url) == (200, b"hello world", False)
    assert pool.idle_count == 0
    pool.close()


async def test_a_refused_write_still_reads_an_early_answer(nursery: trio.Nursery) -> None:
    """An upstream that answers (413) and closes before reading the whole body: the answer is
    still read, and the connection is not kept."""

    async def early_answer(stream: trio.abc.Stream) -> None:
        assert isinstance(stream, trio.SocketStream)
        await stream.receive_some(1024)
        await stream.send_all(b"HTTP/1.1 413 Too Large\r\ncontent-length: 3\r\n\r\nbig")
        await stream.send_eof()
        await trio.sleep(0.2)  # the client's write fills the buffer, then hits the closed peer

    server = await start_raw_server(nursery, early_answer)
    pool = ConnectionPool()
    request = request_to(server.url, b"x" * 20_000_000)
    connection = await pool.connect(request.route)
    await connection.send_request(request)
    head = await connection.receive_response()
    assert head.status == 413
    assert await connection.receive_data() == b"big"
    assert await connection.receive_data() is None
    pool.release(request.route, connection)
    assert pool.idle_count == 0
