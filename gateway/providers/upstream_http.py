"""HTTP toward upstream model APIs: one pooled client per provider, deadlines, and closing.

Each provider owns one ``UpstreamHttp``: an ``httpx.AsyncClient`` speaking HTTP/1.1 only (over
HTTP/2 httpx does not reset a stream it abandons; over HTTP/1.1 abandoning means closing the TCP
connection, which the upstream sees at once) with a keep-alive pool.

Deadlines are trio cancel scopes; httpx's own timeouts are off so that one mechanism decides:

- connect: pool + DNS + TCP (+ TLS) within ``connect_timeout_seconds``;
- first byte: from the moment the request starts going out until the first body byte within
  ``first_byte_timeout`` (response headers that arrive early do not stop this clock);
- idle: at most ``idle_timeout`` between two body chunks afterwards.

Each expiry is a ``ProviderError("timeout")``. Connection closing: a response not read to its end
(cancellation, an error, a timeout, an error status whose body is too long) closes its connection
instead of returning it to the pool; this is httpcore's rule for HTTP/1.1 and ``open_stream``
relies on it by always closing the response, shielded, on the way out (``UpstreamBody.aclose``).

A connection taken from the pool that turns out closed by the upstream before any answer (the
keep-alive race) is retried once on a new connection; a new connection is never retried.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

import httpx
import trio

from gateway.agents.events import ProviderEvent
from gateway.providers.base import Emit, ProviderError
from gateway.providers.upstream_errors import error_from_status
from gateway.providers.upstream_sse import SSEDecodeError, SSEDecoder, SSEEvent
from gateway.settings import ProviderSettings

__all__ = ["EventTranslator", "UpstreamBody", "UpstreamHttp"]

_ERROR_LIMIT = 64 * 1024
_UNWIND_LIMIT = 10_000
_DRAIN_LIMIT = 64 * 1024
_DRAIN_SECONDS = 2.0
_USER_AGENT = "openclaw-gateway"


class _StaleConnection(Exception):
    """A kept-alive connection turned out dead before any answer: worth one fresh attempt."""


class _Trace:
    """httpcore's ``trace`` extension: learns the request's phase and moves its deadline."""

    def __init__(self, scope: trio.CancelScope, first_byte_timeout: float) -> None:
        self._scope = scope
        self._first_byte_timeout = first_byte_timeout
        self.new_connection = False
        self.sending = False

    async def __call__(self, name: str, info: Mapping[str, Any]) -> None:
        if name == "connection.connect_tcp.started":
            self.new_connection = True
        elif name == "http11.send_request_headers.started":
            # Connected (or reusing a pooled connection): the first-byte clock starts now.
            self.sending = True
            self._scope.deadline = trio.current_time() + self._first_byte_timeout


class EventTranslator(Protocol):
    """Turns an API's stream events into provider events; ``done`` once its end marker came."""

    done: bool

    def feed(self, event: SSEEvent) -> list[ProviderEvent]: ...


class UpstreamBody:
    """The body of an upstream response, read chunk by chunk under the deadlines."""

    def __init__(self, response: httpx.Response, settings: ProviderSettings, deadline: float):
        self.content_type: str = response.headers.get("content-type", "")
        self._response = response
        self._chunks = response.aiter_bytes()
        self._settings = settings
        self._first_deadline: float | None = deadline
        # True while httpx's iterator chain is suspended at a ``yield`` (see ``aclose``).
        self._parked = False

    async def receive_some(self) -> bytes | None:
        """The next non-empty chunk, or ``None`` at the end of the body.

        Raises ``ProviderError`` (``timeout`` on the first-byte or idle deadline, ``upstream`` if
        the connection breaks). On cancellation the read stops at once; the enclosing
        ``open_stream`` then closes the connection.
        """
        first = self._first_deadline is not None
        if self._first_deadline is not None:
            deadline = self._first_deadline
        else:
            deadline = trio.current_time() + self._settings.idle_timeout
        with trio.CancelScope(deadline=deadline):
            try:
                chunk = await self._next()
            except httpx.HTTPError as exc:
                raise _transport_error(self._settings.id, exc, "reading the response") from exc
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
            except httpx.HTTPError:
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
            except httpx.HTTPError:
                pass
        return b"".join(parts)[:limit]

    async def aclose(self) -> None:
        """Close the response: its connection goes back to the pool only if the body was read
        to its end, otherwise the TCP connection is closed at once. Call it shielded.

        Then, if the body was abandoned mid-way, resume httpx's chain of async generators until
        it ends: reading the now closed connection fails at once, which finishes every
        generator. Left suspended, they would be finalized by the garbage collector (trio warns
        about that) instead of here.
        """
        await self._response.aclose()
        for _ in range(_UNWIND_LIMIT):
            if not self._parked:
                return
            try:
                await self._next()
            except (httpx.HTTPError, trio.ClosedResourceError):
                return

    async def _next(self) -> bytes | None:
        self._parked = False
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            return None
        self._parked = True
        return chunk


class UpstreamHttp:
    """One provider's connection pool and the request helper built on it."""

    def __init__(self, settings: ProviderSettings) -> None:
        self._settings = settings
        self._client = httpx.AsyncClient(
            http1=True,
            http2=False,
            timeout=httpx.Timeout(None),  # trio deadlines decide, see the module docstring
            limits=httpx.Limits(
                max_connections=None,  # concurrency is bounded by the agents' lanes
                max_keepalive_connections=32,
                keepalive_expiry=30.0,
            ),
            follow_redirects=False,
            headers={"User-Agent": _USER_AGENT},
        )

    @asynccontextmanager
    async def open_stream(
        self, url: str, *, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[UpstreamBody]:
        """POST ``body`` to ``url``; yield the 2xx response body for streaming.

        Raises ``ProviderError`` for a non-2xx status (its body read, bounded, for the message),
        a connection failure or an expired deadline. On leaving, the response is closed,
        shielded from cancellation: a body not read to its end closes the TCP connection, so a
        cancelled caller leaves nothing open and nothing half-read in the pool.
        """
        try:
            response, deadline = await self._send_once(url, body, headers)
        except _StaleConnection:
            response, deadline = await self._send_once(url, body, headers, retry=False)
        upstream = UpstreamBody(response, self._settings, deadline)
        try:
            if not 200 <= response.status_code < 300:
                raise self._status_error(response, await upstream.read_error_body(_ERROR_LIMIT))
            yield upstream
        finally:
            with trio.CancelScope(shield=True):
                await upstream.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._client.aclose()

    async def _send_once(
        self, url: str, body: bytes, headers: Mapping[str, str], *, retry: bool = True
    ) -> tuple[httpx.Response, float]:
        """Send the request and wait for the response headers; returns the response and the
        absolute first-byte deadline. Raises ``_StaleConnection`` (if ``retry``) when a reused
        connection died before answering: the upstream closed it while it sat in the pool."""
        pid = self._settings.id
        with trio.CancelScope(
            deadline=trio.current_time() + self._settings.connect_timeout_seconds
        ) as scope:
            trace = _Trace(scope, self._settings.first_byte_timeout)
            try:
                request = self._client.build_request(
                    "POST", url, content=body, headers=headers, extensions={"trace": trace}
                )
            except httpx.InvalidURL as exc:
                raise ProviderError(
                    "connect", f"Provider '{pid}' has an invalid URL {url!r}: {exc}", provider=pid
                ) from None
            try:
                return await self._client.send(request, stream=True), scope.deadline
            except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if retry and not trace.new_connection:
                    raise _StaleConnection from exc
                raise _transport_error(pid, exc, "waiting for the response") from exc
            except httpx.HTTPError as exc:
                raise _transport_error(pid, exc, "sending the request") from exc
        if trace.sending:
            message = (
                f"Provider '{pid}' sent nothing within {self._settings.first_byte_timeout:g} s"
            )
        else:
            timeout = self._settings.connect_timeout_seconds
            message = f"Could not connect to provider '{pid}' within {timeout:g} s"
        raise ProviderError("timeout", message, provider=pid)

    def _status_error(self, response: httpx.Response, body: bytes) -> ProviderError:
        return error_from_status(
            self._settings.id,
            response.status_code,
            body=body,
            content_type=response.headers.get("content-type", ""),
            retry_after=response.headers.get("retry-after"),
            retry_after_ms=response.headers.get("retry-after-ms"),
        )


def _transport_error(provider: str, exc: httpx.HTTPError, during: str) -> ProviderError:
    """Classify an httpx failure (never a stack trace for the client)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(
            "timeout", f"Provider '{provider}' timed out {during}", provider=provider
        )
    if isinstance(exc, httpx.ConnectError | httpx.ProxyError | httpx.UnsupportedProtocol):
        message = f"Could not connect to provider '{provider}': {detail}"
        return ProviderError("connect", message, provider=provider)
    if isinstance(exc, httpx.DecodingError):
        message = f"Provider '{provider}' sent an undecodable body: {detail}"
        return ProviderError("protocol", message, provider=provider)
    message = f"Provider '{provider}' broke the connection while {during}: {detail}"
    return ProviderError("upstream", message, provider=provider)
