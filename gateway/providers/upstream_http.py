"""HTTP toward upstream model APIs: one connection pool per provider, deadlines, and closing.

Each provider owns one ``UpstreamHttp``: the gateway's HTTP/1.1 client (``http11``) with a
keep-alive pool (at most 32 idle connections, each kept at most 30 s). HTTP/1.1 only: abandoning
a response means closing its TCP connection, which the upstream sees at once. Proxies come from
the environment (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, read when the
provider is built); ``https://`` is verified TLS (see ``http11.pool``).

Deadlines are trio cancel scopes:

- connect: DNS + TCP (+ proxy tunnel + TLS) within ``connect_timeout_seconds`` (a pooled
  connection needs no connecting);
- first byte: from the moment the request starts going out until the first body byte within
  ``first_byte_timeout`` (response headers that arrive early do not stop this clock);
- idle: at most ``idle_timeout`` between two body chunks afterwards.

Each expiry is a ``ProviderError("timeout")``. A connection goes back to the pool only when its
response was read to the end; a response abandoned for any reason (cancellation, an error, a
timeout, an error status whose body is too long) closes its connection at once, and
``open_stream`` guarantees that on the way out.

A connection taken from the pool that turns out closed by the upstream before any byte of an
answer (the keep-alive race) is retried once on a new connection; a new connection is never
retried.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Protocol
from urllib.request import getproxies_environment

import trio

from gateway.providers.base import Emit, ProviderError
from gateway.providers.events import ProviderEvent
from gateway.providers.http11 import (
    ConnectError,
    Connection,
    ConnectionBroken,
    ConnectionPool,
    HttpError,
    InvalidRequest,
    InvalidResponse,
    PreparedRequest,
    ResponseHead,
    Route,
    prepare_request,
)
from gateway.providers.upstream_errors import error_from_status
from gateway.providers.upstream_sse import SSEDecodeError, SSEDecoder, SSEEvent
from gateway.settings import ProviderSettings

__all__ = ["EventTranslator", "UpstreamBody", "UpstreamHttp"]

_ERROR_LIMIT = 64 * 1024
_DRAIN_LIMIT = 64 * 1024
_DRAIN_SECONDS = 2.0
_MAX_IDLE = 32
_IDLE_EXPIRY = 30.0
_DEFAULT_HEADERS: Mapping[str, str] = MappingProxyType({"User-Agent": "openclaw-gateway"})


class _StaleConnection(Exception):
    """A kept-alive connection turned out dead before any answer: worth one fresh attempt."""


class EventTranslator(Protocol):
    """Turns an API's stream events into provider events; ``done`` once its end marker came."""

    done: bool

    def feed(self, event: SSEEvent) -> list[ProviderEvent]: ...


class UpstreamBody:
    """The body of an upstream response, read chunk by chunk under the deadlines."""

    def __init__(
        self,
        pool: ConnectionPool,
        route: Route,
        connection: Connection,
        head: ResponseHead,
        settings: ProviderSettings,
        deadline: float,
    ) -> None:
        self.content_type: str = head.content_type
        self._pool = pool
        self._route = route
        self._connection = connection
        self._released = False
        self._settings = settings
        self._first_deadline: float | None = deadline

    async def receive_some(self) -> bytes | None:
        """The next non-empty chunk, or ``None`` at the end of the body.

        Raises ``ProviderError`` (``timeout`` on the first-byte or idle deadline, ``upstream`` if
        the connection breaks, ``protocol`` for an invalid body). On cancellation the read stops
        at once; the enclosing ``open_stream`` then closes the connection.
        """
        first = self._first_deadline is not None
        if self._first_deadline is not None:
            deadline = self._first_deadline
        else:
            deadline = trio.current_time() + self._settings.idle_timeout
        with trio.CancelScope(deadline=deadline):
            chunk = await self._next()
            self._first_deadline = None
            return chunk
        pid = self._settings.id
        if first:
            message = (
                f"Provider '{pid}' sent nothing within {self._settings.first_byte_timeout:g} s"
            )
        else:
            message = f"Provider '{pid}' stalled: no data for {self._settings.idle_timeout:g} s"
        raise ProviderError("timeout", message, provider=pid)

    async def relay_events(self, translator: EventTranslator, emit: Emit) -> None:
        """Decode the body as an event stream and ``emit`` what ``translator`` makes of it, in
        order, until the translator is done (the rest is then drained) or the body ends.

        Raises ``ProviderError`` (``protocol`` for a body that is no event stream, or whatever
        the translator raises). Cancellation, also while ``emit`` waits, stops it at once.
        """
        decoder = SSEDecoder()
        while not translator.done:
            chunk = await self.receive_some()
            try:
                events = decoder.feed(chunk) if chunk is not None else decoder.close()
            except SSEDecodeError as exc:
                raise ProviderError("protocol", str(exc), provider=self._settings.id) from None
            for sse in events:
                for event in translator.feed(sse):
                    await emit(event)
            if chunk is None:
                return
        await self.drain()

    async def read_all(self, limit: int) -> bytes:
        """The rest of the body (at most ``limit`` bytes, else ``ProviderError("protocol")``)."""
        parts: list[bytes] = []
        size = 0
        while (chunk := await self.receive_some()) is not None:
            size += len(chunk)
            if size > limit:
                raise ProviderError(
                    "protocol",
                    f"Provider '{self._settings.id}' sent a response over {limit} bytes",
                    provider=self._settings.id,
                )
            parts.append(chunk)
        return b"".join(parts)

    async def drain(self) -> None:
        """After the logical end of a stream, read what is left (normally just the end of the
        chunked encoding) so the connection can go back to the pool.

        Gives up quietly after a short while or a few KiB: the connection is then closed instead.
        """
        size = 0
        with trio.move_on_after(min(_DRAIN_SECONDS, self._settings.idle_timeout)):
            try:
                while (chunk := await self._next()) is not None:
                    size += len(chunk)
                    if size > _DRAIN_LIMIT:
                        return
            except ProviderError:
                return

    async def read_error_body(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of an error body, before the first-byte deadline; whatever
        arrived if the body breaks or stalls (the status alone is worth reporting)."""
        parts: list[bytes] = []
        size = 0
        with trio.CancelScope(deadline=self._first_deadline or -math.inf):
            try:
                while size < limit and (chunk := await self._next()) is not None:
                    parts.append(chunk)
                    size += len(chunk)
            except ProviderError:
                pass
        return b"".join(parts)[:limit]

    async def aclose(self) -> None:
        """Give the connection back to the pool if the body was read to its end, else close the
        TCP connection at once. Never blocks (nothing to shield); later calls do nothing."""
        if not self._released:
            self._released = True
            self._pool.release(self._route, self._connection)

    async def _next(self) -> bytes | None:
        try:
            return await self._connection.receive_data()
        except HttpError as exc:
            raise _transport_error(self._settings.id, exc, "reading the response") from None


class UpstreamHttp:
    """One provider's connection pool and the request helper built on it.

    ``ssl_context`` replaces ``http11.default_ssl_context()`` for ``https://`` upstreams (tests
    pass one that trusts their own CA).
    """

    def __init__(
        self, settings: ProviderSettings, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._settings = settings
        self._pool = ConnectionPool(
            ssl_context=ssl_context, max_idle=_MAX_IDLE, idle_expiry=_IDLE_EXPIRY
        )
        self._proxies = getproxies_environment()

    @asynccontextmanager
    async def open_stream(
        self, url: str, *, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[UpstreamBody]:
        """POST ``body`` to ``url``; yield the 2xx response body for streaming.

        Raises ``ProviderError`` for a non-2xx status (its body read, bounded, for the message),
        an unusable URL, a connection failure or an expired deadline. On leaving, the
        connection goes back to the pool only if the body was read to its end; otherwise it is
        closed at once, so a cancelled caller (in any phase: connecting, writing the request,
        waiting, reading, or in its own code) leaves nothing open and nothing half-read.
        """
        pid = self._settings.id
        try:
            request = prepare_request("POST", url, (_DEFAULT_HEADERS, headers), body, self._proxies)
        except InvalidRequest as exc:
            message = f"Provider '{pid}' cannot send its request: {exc}"
            raise ProviderError("connect", message, provider=pid) from None
        connection, head, deadline = await self._exchange(request)
        upstream = UpstreamBody(
            self._pool, request.route, connection, head, self._settings, deadline
        )
        try:
            if not 200 <= head.status < 300:
                raise self._status_error(head, await upstream.read_error_body(_ERROR_LIMIT))
            yield upstream
        finally:
            await upstream.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection (those in use close when their response is done)."""
        self._pool.close()

    async def _exchange(self, request: PreparedRequest) -> tuple[Connection, ResponseHead, float]:
        """Send ``request`` on a pooled connection (retried once on a new one if that turns out
        dead) or a new one; returns the connection, the response head and the absolute
        first-byte deadline."""
        connection = self._pool.take_idle(request.route)
        if connection is not None:
            try:
                return await self._send(request, connection, reused=True)
            except _StaleConnection:
                pass
        return await self._send(request, await self._connect(request.route), reused=False)

    async def _connect(self, route: Route) -> Connection:
        pid = self._settings.id
        timeout = self._settings.connect_timeout_seconds
        with trio.move_on_after(timeout):
            try:
                return await self._pool.connect(route)
            except ConnectError as exc:
                message = f"Could not connect to provider '{pid}': {exc}"
                raise ProviderError("connect", message, provider=pid) from None
        message = f"Could not connect to provider '{pid}' within {timeout:g} s"
        raise ProviderError("timeout", message, provider=pid)

    async def _send(
        self, request: PreparedRequest, connection: Connection, *, reused: bool
    ) -> tuple[Connection, ResponseHead, float]:
        """Write the request and wait for the response head under the first-byte deadline.

        Raises ``_StaleConnection`` when a ``reused`` connection died before any answer. The
        connection is closed on every way out but a successful return.
        """
        pid = self._settings.id
        deadline = trio.current_time() + self._settings.first_byte_timeout
        try:
            with trio.CancelScope(deadline=deadline):
                await connection.send_request(request)
                return connection, await connection.receive_response(), deadline
        except BaseException as exc:
            connection.close()
            if isinstance(exc, ConnectionBroken) and reused and not exc.answered:
                raise _StaleConnection from None
            if isinstance(exc, HttpError):
                raise _transport_error(pid, exc, "waiting for the response") from None
            raise
        connection.close()
        message = f"Provider '{pid}' sent nothing within {self._settings.first_byte_timeout:g} s"
        raise ProviderError("timeout", message, provider=pid)

    def _status_error(self, head: ResponseHead, body: bytes) -> ProviderError:
        return error_from_status(
            self._settings.id,
            head.status,
            body=body,
            content_type=head.content_type,
            retry_after=head.headers.get("retry-after"),
            retry_after_ms=head.headers.get("retry-after-ms"),
        )


def _transport_error(provider: str, exc: HttpError, during: str) -> ProviderError:
    """Classify a client failure (never a stack trace for the client)."""
    if isinstance(exc, InvalidResponse):
        message = f"Provider '{provider}' sent an invalid response: {exc}"
        return ProviderError("protocol", message, provider=provider)
    message = f"Provider '{provider}' broke the connection while {during}: {exc}"
    return ProviderError("upstream", message, provider=provider)
