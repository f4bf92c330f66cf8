"""One upstream's HTTP/1.1 connections: opening them (TCP, proxy, TLS) and keeping idle ones.

Opening (``connect``): ``trio.open_tcp_stream`` (DNS, happy eyeballs), to the route's proxy if it
has one (a CONNECT tunnel for ``https://`` targets, see ``routing``), then for ``https://`` TLS
through ``trio.SSLStream``: certificate and host name verified, SNI, ALPN ``http/1.1``. The TLS
context is ``default_ssl_context()``, made on the first TLS connection, or the ``ssl_context``
given to the pool (tests trust their own CA that way). It trusts the system's store (OpenSSL
also reads ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``) and Mozilla's bundle from ``certifi``, so a
slim container without CA certificates reaches the public APIs and a private CA installed in the
system is trusted too.

Keeping (``release``, ``take_idle``): a connection whose exchange ended cleanly goes back to the
pool, any other is closed at once. At most ``max_idle`` connections are kept (beyond, the oldest
is closed), each at most ``idle_expiry`` seconds. ``take_idle`` hands out the route's most
recently used connection after checking that the upstream has not closed it meanwhile; idle
connections found closed or expired are closed.
"""

from __future__ import annotations

import ssl

import certifi
import h11
import trio

from gateway.providers.http11.connection import Connection
from gateway.providers.http11.routing import Route, connect_request
from gateway.providers.http11.wire import ConnectError

__all__ = ["ConnectionPool", "default_ssl_context"]

_PROXY_HEAD_LIMIT = 65536


def default_ssl_context() -> ssl.SSLContext:
    """``ssl.create_default_context()`` (verification on, the system's CAs) plus ``certifi``'s
    bundle, with ALPN ``http/1.1``."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


class ConnectionPool:
    """Opens connections and keeps the idle ones (see the module docstring)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 32,
        idle_expiry: float = 30.0,
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle_expiry = idle_expiry
        # Oldest first: (route, connection, idle since).
        self._idle: list[tuple[Route, Connection, float]] = []
        self._closed = False

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def take_idle(self, route: Route) -> Connection | None:
        """The most recently used idle connection of ``route`` that still looks open, if any."""
        self._expire(trio.current_time())
        for index in range(len(self._idle) - 1, -1, -1):
            idle_route, connection, _ = self._idle[index]
            if idle_route is route or idle_route == route:
                del self._idle[index]
                if connection.looks_alive():
                    return connection
                connection.close()
        return None

    def release(self, route: Route, connection: Connection) -> None:
        """Keep ``connection`` for ``route`` if it is ``reusable``, else close it at once."""
        if self._closed or not connection.reusable:
            connection.close()
            return
        connection.start_next_cycle()
        now = trio.current_time()
        self._expire(now)
        self._idle.append((route, connection, now))
        if len(self._idle) > self._max_idle:
            self._idle.pop(0)[1].close()

    async def connect(self, route: Route) -> Connection:
        """A new connection for ``route``. Raises ``ConnectError``.

        Cancelled (or failing) at any step, it leaves no socket open.
        """
        first = route.proxy.origin if route.proxy is not None else route.origin
        try:
            tcp = await trio.open_tcp_stream(first.host, first.port)
        except OSError as exc:
            raise ConnectError(f"{first.authority}: {_reason(exc)}") from None
        stream: trio.abc.Stream = tcp
        try:
            if route.proxy is not None and route.proxy.origin.scheme == "https":
                stream = await self._start_tls(stream, route.proxy.origin.host)
            if route.tunnel:
                await _open_tunnel(stream, route)
            if route.origin.scheme == "https":
                stream = await self._start_tls(stream, route.origin.host)
        except BaseException:
            tcp.socket.close()
            raise
        return Connection(stream, tcp.socket)

    def close(self) -> None:
        """Close every idle connection; connections in use are closed when released."""
        self._closed = True
        idle, self._idle = self._idle, []
        for _, connection, _ in idle:
            connection.close()

    def _expire(self, now: float) -> None:
        while self._idle and now - self._idle[0][2] >= self._idle_expiry:
            self._idle.pop(0)[1].close()

    async def _start_tls(
        self, stream: trio.abc.Stream, hostname: str
    ) -> trio.SSLStream[trio.abc.Stream]:
        if self._ssl_context is None:
            # Loading the trust store takes tens of milliseconds: not on the event loop.
            self._ssl_context = await trio.to_thread.run_sync(
                default_ssl_context, abandon_on_cancel=True
            )
        tls = trio.SSLStream(
            stream, self._ssl_context, server_hostname=hostname, https_compatible=True
        )
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError as exc:
            raise ConnectError(f"TLS with {hostname} failed: {_reason(exc)}") from None
        return tls


async def _open_tunnel(stream: trio.abc.Stream, route: Route) -> None:
    """Ask the route's proxy, over ``stream``, for a tunnel to the route's origin.

    Raises ``ConnectError`` when the proxy refuses (any status but 2xx), breaks the connection
    or answers something that is not HTTP.
    """
    assert route.proxy is not None
    proxy = route.proxy.origin.authority
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_PROXY_HEAD_LIMIT)
    try:
        await stream.send_all(conn.send(connect_request(route)) + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_PROXY_HEAD_LIMIT)
                if not data:
                    raise ConnectError(f"proxy {proxy} closed the connection instead of answering")
                conn.receive_data(bytes(data))
            elif type(event) is not h11.InformationalResponse:
                break
    except trio.BrokenResourceError as exc:
        raise ConnectError(f"proxy {proxy} broke the connection: {_reason(exc)}") from None
    except h11.RemoteProtocolError as exc:
        raise ConnectError(f"proxy {proxy} sent an invalid answer to CONNECT: {exc}") from None
    if type(event) is not h11.Response or not 200 <= event.status_code < 300:
        status = event.status_code if type(event) is h11.Response else "nothing"
        raise ConnectError(
            f"proxy {proxy} refused the tunnel to {route.origin.authority} (HTTP {status})"
        )
    if conn.trailing_data[0]:
        raise ConnectError(f"proxy {proxy} sent data before the tunnel was used")


def _reason(exc: BaseException) -> str:
    """The most telling message of an error: the first cause trio wrapped, else its own."""
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        cause = cause.exceptions[0]
    reason = cause if cause is not None else exc
    return str(reason) or type(reason).__name__
