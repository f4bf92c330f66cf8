"""The upstream clients ``bench.upstream_client`` compares the gateway's own with: httpx (the
gateway's upstream client until ``gateway.providers.http11`` replaced it; this is that code) and
httpcore used directly. Both have the interface of ``gateway.providers.upstream_http``
(``UpstreamHttp.open_stream`` yielding a body with ``content_type``, ``receive_some``,
``relay_events``, ``read_all``, ``drain``, ``read_error_body``, ``aclose``), so a provider runs
on any of them unchanged, with the same trio deadlines and the same ``ProviderError``s for what
the benchmark exercises. ``ReplayUpstream`` is the floor under all of them: no HTTP at all, the
body chunks of one real answer replayed from memory.

httpx and httpcore take no part in the gateway: ``pip install -e '.[bench]'`` brings them.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import trio

from gateway.providers.base import Emit, ProviderError
from gateway.providers.upstream_errors import error_from_status
from gateway.providers.upstream_http import EventTranslator
from gateway.providers.upstream_sse import SSEDecodeError, SSEDecoder
from gateway.settings import ProviderSettings

__all__ = ["HttpcoreUpstream", "HttpxUpstream", "ReplayUpstream"]

_ERROR_LIMIT = 64 * 1024
_UNWIND_LIMIT = 10_000
_DRAIN_LIMIT = 64 * 1024
_DRAIN_SECONDS = 2.0
_USER_AGENT = "openclaw-gateway"
_HTTPCORE_ERRORS = (
    httpcore.ConnectionNotAvailable,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.TimeoutException,
    httpcore.UnsupportedProtocol,
)


class _StaleConnection(Exception):
    pass


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
            self.sending = True
            self._scope.deadline = trio.current_time() + self._first_byte_timeout


class ReferenceBody:
    """A response body read under the deadlines, over either library's chunk iterator."""

    def __init__(
        self,
        content_type: str,
        chunks: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
        errors: tuple[type[Exception], ...],
        settings: ProviderSettings,
        deadline: float,
    ) -> None:
        self.content_type = content_type
        self._chunks = chunks
        self._close = close
        self._errors = errors
        self._settings = settings
        self._first_deadline: float | None = deadline
        self._parked = False  # the library's generator chain is suspended at a ``yield``

    async def receive_some(self) -> bytes | None:
        first = self._first_deadline is not None
        if self._first_deadline is not None:
            deadline = self._first_deadline
        else:
            deadline = trio.current_time() + self._settings.idle_timeout
        with trio.CancelScope(deadline=deadline):
            try:
                chunk = await self._next()
            except self._errors as exc:
                pid = self._settings.id
                raise ProviderError("upstream", f"Provider '{pid}' broke: {exc}") from exc
            self._first_deadline = None
            return chunk
        kind = "sent nothing" if first else "stalled"
        raise ProviderError("timeout", f"Provider '{self._settings.id}' {kind}")

    async def relay_events(self, translator: EventTranslator, emit: Emit) -> None:
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
        parts: list[bytes] = []
        size = 0
        while (chunk := await self.receive_some()) is not None:
            size += len(chunk)
            if size > limit:
                raise ProviderError("protocol", f"a response over {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def drain(self) -> None:
        size = 0
        with trio.move_on_after(min(_DRAIN_SECONDS, self._settings.idle_timeout)):
            try:
                while (chunk := await self._next()) is not None:
                    size += len(chunk)
                    if size > _DRAIN_LIMIT:
                        return
            except self._errors:
                return

    async def read_error_body(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        with trio.CancelScope(deadline=self._first_deadline or -math.inf):
            try:
                while size < limit and (chunk := await self._next()) is not None:
                    parts.append(chunk)
                    size += len(chunk)
            except self._errors:
                pass
        return b"".join(parts)[:limit]

    async def aclose(self) -> None:
        """Close the response, then run an abandoned generator chain to its end (see the
        gateway's history: left suspended, the garbage collector would finalize it)."""
        await self._close()
        for _ in range(_UNWIND_LIMIT):
            if not self._parked:
                return
            try:
                await self._next()
            except (*self._errors, trio.ClosedResourceError):
                return

    async def _next(self) -> bytes | None:
        self._parked = False
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            return None
        self._parked = True
        return chunk


class _Upstream:
    """What both clients share: the stale retry, the deadlines and the status errors."""

    errors: tuple[type[Exception], ...] = ()
    stale_errors: tuple[type[Exception], ...] = ()

    def __init__(self, settings: ProviderSettings) -> None:
        self._settings = settings

    @asynccontextmanager
    async def open_stream(
        self, url: str, *, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[ReferenceBody]:
        try:
            upstream, status, info = await self._send_once(url, body, headers)
        except _StaleConnection:
            upstream, status, info = await self._send_once(url, body, headers, retry=False)
        try:
            if not 200 <= status < 300:
                error_body = await upstream.read_error_body(_ERROR_LIMIT)
                raise error_from_status(
                    self._settings.id,
                    status,
                    body=error_body,
                    content_type=upstream.content_type,
                    retry_after=info.get("retry-after"),
                )
            yield upstream
        finally:
            with trio.CancelScope(shield=True):
                await upstream.aclose()

    async def _send_once(
        self, url: str, body: bytes, headers: Mapping[str, str], *, retry: bool = True
    ) -> tuple[ReferenceBody, int, Mapping[str, str]]:
        pid = self._settings.id
        start = trio.current_time()
        with trio.CancelScope(deadline=start + self._settings.connect_timeout_seconds) as scope:
            trace = _Trace(scope, self._settings.first_byte_timeout)
            try:
                return await self._send(url, body, headers, trace, scope)
            except self.stale_errors as exc:
                if retry and not trace.new_connection:
                    raise _StaleConnection from exc
                raise ProviderError("upstream", f"Provider '{pid}' broke: {exc}") from exc
            except self.errors as exc:
                raise ProviderError("connect", f"Could not connect to '{pid}': {exc}") from exc
        raise ProviderError("timeout", f"Provider '{pid}' timed out")

    async def _send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        trace: _Trace,
        scope: trio.CancelScope,
    ) -> tuple[ReferenceBody, int, Mapping[str, str]]:
        raise NotImplementedError

    def _body(
        self,
        content_type: str,
        chunks: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
        scope: trio.CancelScope,
    ) -> ReferenceBody:
        return ReferenceBody(
            content_type, chunks, close, self.errors, self._settings, scope.deadline
        )


class HttpxUpstream(_Upstream):
    """The gateway's former client: an ``httpx.AsyncClient``, HTTP/1.1, keep-alive pool."""

    errors = (httpx.HTTPError,)
    stale_errors = (httpx.RemoteProtocolError, httpx.ReadError)

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._client = httpx.AsyncClient(
            http1=True,
            http2=False,
            timeout=httpx.Timeout(None),
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=32, keepalive_expiry=30.0
            ),
            follow_redirects=False,
            headers={"User-Agent": _USER_AGENT},
        )

    async def _send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        trace: _Trace,
        scope: trio.CancelScope,
    ) -> tuple[ReferenceBody, int, Mapping[str, str]]:
        request = self._client.build_request(
            "POST", url, content=body, headers=headers, extensions={"trace": trace}
        )
        response = await self._client.send(request, stream=True)
        content_type = response.headers.get("content-type", "")
        upstream = self._body(content_type, response.aiter_bytes(), response.aclose, scope)
        return upstream, response.status_code, response.headers

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpcoreUpstream(_Upstream):
    """httpcore's connection pool used directly (what httpx runs on, without httpx's models)."""

    errors = _HTTPCORE_ERRORS
    stale_errors = (httpcore.RemoteProtocolError, httpcore.ReadError)

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=None,
            max_keepalive_connections=32,
            keepalive_expiry=30.0,
            http1=True,
            http2=False,
        )

    async def _send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        trace: _Trace,
        scope: trio.CancelScope,
    ) -> tuple[ReferenceBody, int, Mapping[str, str]]:
        # httpcore's ``request()`` helpers add these two; ``handle_async_request`` does not.
        host = urlsplit(url).netloc
        fields = [("Host", host), ("User-Agent", _USER_AGENT), *headers.items()]
        fields.append(("Content-Length", str(len(body))))
        request = httpcore.Request(
            "POST", url, headers=fields, content=body, extensions={"trace": trace}
        )
        response = await self._pool.handle_async_request(request)
        info = {k.decode().lower(): v.decode("latin-1") for k, v in response.headers}
        content_type = info.get("content-type", "")
        upstream = self._body(content_type, response.aiter_stream(), response.aclose, scope)
        return upstream, response.status, info

    async def aclose(self) -> None:
        await self._pool.aclose()


class ReplayUpstream:
    """No HTTP: every ``open_stream`` replays ``chunks`` (one real answer's body, as a client
    received it) from memory, through the same body code. What is left is the provider's own
    work (SSE decoding, JSON, events) and the deadlines: the floor under every client."""

    def __init__(self, settings: ProviderSettings, content_type: str, chunks: list[bytes]) -> None:
        self._settings = settings
        self._content_type = content_type
        self._chunks = chunks

    @asynccontextmanager
    async def open_stream(
        self, url: str, *, body: bytes, headers: Mapping[str, str]
    ) -> AsyncIterator[ReferenceBody]:
        deadline = trio.current_time() + self._settings.first_byte_timeout
        upstream = ReferenceBody(
            self._content_type, _replay(self._chunks), _nothing, (), self._settings, deadline
        )
        try:
            yield upstream
        finally:
            await upstream.aclose()

    async def aclose(self) -> None:
        pass


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        await trio.lowlevel.checkpoint()  # a socket read is a checkpoint too
        yield chunk


async def _nothing() -> None:
    pass
