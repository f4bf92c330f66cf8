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

Each expiry is a ``ProviderError("timeout")``; the body's reads are ``upstream_body``'s. A
request's URL and headers are parsed, routed and checked once per ``UpstreamHttp`` (a request
template); each request only adds its body. A connection goes back to the pool only when its
response was read to the end; a response abandoned for any reason (cancellation, an error, a
timeout, an error status whose body is too long) closes its connection at once, and
``open_stream`` guarantees that on the way out.

A connection taken from the pool that turns out closed by the upstream before any byte of an
answer (the keep-alive race) is retried once on a new connection; a new connection is never
retried.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from types import MappingProxyType
from urllib.request import getproxies_environment

import trio

from gateway.providers.base import ProviderError
from gateway.providers.http11 import (
    ConnectError,
    Connection,
    ConnectionBroken,
    ConnectionPool,
    HttpError,
    InvalidRequest,
    PreparedRequest,
    RequestTemplate,
    ResponseHead,
    Route,
    request_template,
)
from gateway.providers.upstream_body import EventTranslator, UpstreamBody, transport_error
from gateway.providers.upstream_errors import error_from_status
from gateway.settings import ProviderSettings

__all__ = ["EventTranslator", "UpstreamBody", "UpstreamHttp", "upstream_headers"]

_ERROR_LIMIT = 64 * 1024
_MAX_IDLE = 32
_IDLE_EXPIRY = 30.0
_MAX_TEMPLATES = 8  # a provider uses one URL with the same headers: more is a caller's churn
_DEFAULT_HEADERS: Mapping[str, str] = MappingProxyType({"User-Agent": "openclaw-gateway"})


class _StaleConnection(Exception):
    """A kept-alive connection turned out dead before any answer: worth one fresh attempt."""


def upstream_headers(
    settings: ProviderSettings,
    accept: str,
    *,
    key_header: str = "Authorization",
    key_format: str = "Bearer {}",
    fixed: Mapping[str, str] | None = None,
) -> Mapping[str, str]:
    """The headers every request of a provider carries, made once: JSON in, ``accept`` out,
    the API key (as ``key_header: key_format``) when there is one, then ``fixed`` and the
    provider's configured ``headers`` (which win)."""
    headers = {"Content-Type": "application/json", "Accept": accept, **(fixed or {})}
    if settings.api_key:
        headers[key_header] = key_format.format(settings.api_key)
    headers.update(settings.headers)
    return MappingProxyType(headers)


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
        # (url, headers) -> its request template: a provider's URL and headers do not change,
        # so parsing, routing and checking them is done once, not on every request.
        self._templates: dict[tuple[str, tuple[tuple[str, str], ...]], RequestTemplate] = {}

    def open_stream(self, url: str, *, body: bytes, headers: Mapping[str, str]) -> OpenStream:
        """``async with`` it: POST ``body`` to ``url``; gives the 2xx response body for streaming.

        Raises ``ProviderError`` for a non-2xx status (its body read, bounded, for the message),
        an unusable URL, a connection failure or an expired deadline. On leaving, the
        connection goes back to the pool only if the body was read to its end; otherwise it is
        closed at once, so a cancelled caller (in any phase: connecting, writing the request,
        waiting, reading, or in its own code) leaves nothing open and nothing half-read.
        """
        return OpenStream(self, url, body, headers)

    async def _open(self, url: str, body: bytes, headers: Mapping[str, str]) -> UpstreamBody:
        request = self._template(url, headers).prepare(body)
        connection, head, deadline = await self._exchange(request)
        upstream = UpstreamBody(
            self._pool, request.route, connection, head, self._settings, deadline
        )
        if not 200 <= head.status < 300:
            try:
                raise self._status_error(head, await upstream.read_error_body(_ERROR_LIMIT))
            finally:
                await upstream.aclose()
        return upstream

    async def aclose(self) -> None:
        """Close every pooled connection (those in use close when their response is done)."""
        self._pool.close()

    def _template(self, url: str, headers: Mapping[str, str]) -> RequestTemplate:
        """The template of POST requests to ``url`` with ``headers``, made on first use.

        Raises ``ProviderError("connect")`` for a URL, header or proxy setting that cannot be
        used (not remembered: each request raises it again).
        """
        key = (url, tuple(headers.items()))
        template = self._templates.get(key)
        if template is None:
            try:
                template = request_template("POST", url, (_DEFAULT_HEADERS, headers), self._proxies)
            except InvalidRequest as exc:
                pid = self._settings.id
                message = f"Provider '{pid}' cannot send its request: {exc}"
                raise ProviderError("connect", message, provider=pid) from None
            if len(self._templates) >= _MAX_TEMPLATES:
                del self._templates[next(iter(self._templates))]  # the oldest
            self._templates[key] = template
        return template

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
                raise transport_error(pid, exc, "waiting for the response") from None
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


class HttpProvider:
    """What every provider on ``UpstreamHttp`` shares: its settings, its upstream client
    (``http``, default: a new ``UpstreamHttp(settings)`` with its own connection pool), which
    ``aclose`` closes, and its id."""

    def __init__(self, settings: ProviderSettings, *, http: UpstreamHttp | None = None) -> None:
        self._settings = settings
        self._http = http if http is not None else UpstreamHttp(settings)

    @property
    def id(self) -> str:
        return self._settings.id

    async def aclose(self) -> None:
        await self._http.aclose()


def json_body(document: object) -> bytes:
    """A request body: ``document`` as compact UTF-8 JSON. Made in the call to ``open_stream``
    (``body=json_body(...)``), it is dropped once sent instead of living as long as the
    response."""
    return _dumps(document).encode()


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class OpenStream:
    """``UpstreamHttp.open_stream``'s context manager (a class, not a generator: one is held
    for each upstream request's whole life, and this is smaller)."""

    __slots__ = ("_body", "_headers", "_http", "_upstream", "_url")

    def __init__(
        self, http: UpstreamHttp, url: str, body: bytes, headers: Mapping[str, str]
    ) -> None:
        self._http = http
        self._url = url
        self._body = body
        self._headers = headers
        self._upstream: UpstreamBody | None = None

    async def __aenter__(self) -> UpstreamBody:
        self._upstream = await self._http._open(self._url, self._body, self._headers)
        self._body = b""  # sent: not kept for the response's life
        return self._upstream

    async def __aexit__(self, *exc_info: object) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()
