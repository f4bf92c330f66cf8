"""Servers for the HTTP/1.1 client's tests, on trio sockets on loopback: a raw server whose
connections a test handles byte by byte, a TLS server with a throwaway CA, and the two kinds
of proxy (CONNECT tunnel, plain forwarding)."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import h11
import trio
import trustme

from gateway.providers.http11 import ConnectionPool, default_ssl_context, request_template
from gateway.providers.http11.routing import PreparedRequest

Handler = Callable[[trio.abc.Stream], Awaitable[None]]

SSE_OK = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 10\r\n\r\ndata: hi\n\n"
)


@dataclass
class RawServer:
    """A loopback server calling ``handler`` for each connection; counts what it saw."""

    port: int = 0
    accepted: int = 0
    connected: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/x"


async def start_raw_server(
    nursery: trio.Nursery, handler: Handler, *, tls: ssl.SSLContext | None = None
) -> RawServer:
    """Serve ``handler`` on 127.0.0.1 (over TLS with ``tls``) until the nursery is cancelled."""
    server = RawServer()

    async def serve(stream: trio.SocketStream) -> None:
        server.accepted += 1
        server.connected.set()
        wrapped: trio.abc.Stream = stream
        try:
            if tls is not None:
                wrapped = trio.SSLStream(stream, tls, server_side=True, https_compatible=True)
                await wrapped.do_handshake()
            await handler(wrapped)
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(stream)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    server.port = listeners[0].socket.getsockname()[1]
    await nursery.start(trio.serve_listeners, serve, listeners)
    return server


async def read_request(stream: trio.abc.Stream, conn: h11.Connection) -> h11.Request | None:
    """Read one whole request with ``conn`` (a server-side h11 connection); ``None`` at EOF."""
    head: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.EndOfMessage):
            return head
        elif isinstance(event, h11.ConnectionClosed):
            return None


def answering(*responses: bytes, then_close: bool = False) -> Handler:
    """A handler that reads requests and answers each with the next of ``responses`` (raw
    bytes), then waits for the client to leave (or closes, with ``then_close``)."""

    async def handler(stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        for response in responses:
            if await read_request(stream, conn) is None:
                return
            await stream.send_all(response)
            conn = h11.Connection(h11.SERVER)  # raw answers: h11 did not see them
        if not then_close:
            while await stream.receive_some(65536):
                pass

    return handler


def parse_head(head: bytes) -> h11.Request:
    """A request head as a server reads it (h11's parser), to check what the client writes."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    request = conn.next_event()
    assert isinstance(request, h11.Request)
    return request


def request_to(
    url: str, body: bytes = b"{}", proxies: dict[str, str] | None = None
) -> PreparedRequest:
    return request_template("POST", url, ({"User-Agent": "test"},), proxies or {}).prepare(body)


async def exchange(pool: ConnectionPool, url: str) -> tuple[int, bytes, bool]:
    """One whole exchange through ``pool``: (status, body, whether the connection was pooled
    before). The connection is released afterwards."""
    request = request_to(url)
    connection = pool.take_idle(request.route)
    reused = connection is not None
    if connection is None:
        connection = await pool.connect(request.route)
    try:
        await connection.send_request(request)
        head = await connection.receive_response()
        parts = []
        while (data := await connection.receive_data()) is not None:
            parts.append(data)
    finally:
        pool.release(request.route, connection)
    return head.status, b"".join(parts), reused


@dataclass
class Tls:
    """A throwaway CA, a server context whose certificate it signed, and client contexts."""

    ca: trustme.CA
    server: ssl.SSLContext
    sni: list[str | None] = field(default_factory=list)
    alpn: list[str | None] = field(default_factory=list)

    def client(self) -> ssl.SSLContext:
        """The client's default context, also trusting this CA."""
        context = default_ssl_context()
        self.ca.configure_trust(context)
        return context


def make_tls(*names: str) -> Tls:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("localhost", "127.0.0.1"))).configure_cert(server)
    server.set_alpn_protocols(["h2", "http/1.1"])
    tls = Tls(ca, server)

    def remember_sni(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        tls.sni.append(name)

    server.sni_callback = remember_sni  # type: ignore[assignment]
    return tls


async def pipe(source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
    """Copy ``source`` to ``sink`` until EOF, then send EOF on."""
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
        if isinstance(sink, trio.SocketStream):
            await sink.send_eof()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


@dataclass
class ProxyLog:
    """What a test proxy received: request lines and ``Proxy-Authorization`` values."""

    targets: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


def connect_proxy(log: ProxyLog, *, refuse: int | None = None) -> Handler:
    """A CONNECT proxy: opens the tunnel to the requested loopback port and copies both ways;
    with ``refuse``, answers CONNECT with that status instead."""

    async def handler(stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        request = await read_request(stream, conn)
        if request is None:
            return
        log.targets.append(f"{request.method.decode()} {request.target.decode()}")
        log.authorizations.append(_header(request, b"proxy-authorization"))
        if refuse is not None:
            reason = b"Proxy Authentication Required" if refuse == 407 else b"No"
            await stream.send_all(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\n\r\n" % (refuse, reason))
            return
        port = int(request.target.rsplit(b":", 1)[1])
        upstream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(pipe, upstream, stream)
            await pipe(stream, upstream)

    return handler


def forward_proxy(log: ProxyLog, response: bytes = SSE_OK) -> Handler:
    """A plain HTTP proxy that records each absolute-form request and answers it itself."""

    async def handler(stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        while (request := await read_request(stream, conn)) is not None:
            log.targets.append(f"{request.method.decode()} {request.target.decode()}")
            log.authorizations.append(_header(request, b"proxy-authorization"))
            await stream.send_all(response)
            conn = h11.Connection(h11.SERVER)

    return handler


def _header(request: h11.Request, name: bytes) -> str | None:
    return next((v.decode() for k, v in request.headers if k == name), None)


def relay_to(port: int, tls: Tls | None = None) -> Handler:
    """A handler relaying each connection to 127.0.0.1:``port`` (the fake upstream): behind
    ``start_raw_server(..., tls=...)`` it terminates TLS in front of it. Records the
    negotiated ALPN protocol in ``tls``."""

    async def handler(stream: trio.abc.Stream) -> None:
        if tls is not None and isinstance(stream, trio.SSLStream):
            tls.alpn.append(stream.selected_alpn_protocol())
        upstream = await trio.open_tcp_stream("127.0.0.1", port)
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(pipe, upstream, stream)
            await pipe(stream, upstream)

    return handler
