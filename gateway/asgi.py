"""The ASGI layer around the Quart app.

- Refuses to run on anything but trio (Hypercorn's default worker is asyncio, on which every
  request to a quart-trio app would fail): startup fails with a message naming ``-k trio``.
- Gives every HTTP request a nursery of its own (handed to a direct route), opened before the
  route sees the request and cancelled as soon as it is done with it, whether it finished or the
  client went away. Agent runs live there, so a run can outlast the route handler (its response
  headers wait for the first event) yet never outlive the request.
- Shields the final ``http.response.body`` send: quart-trio cancels the request scope on the
  post-response disconnect, which otherwise kills Hypercorn's keep-alive idle timer.
- Holds back the final ``http.response.body`` of an answer given before the request body has
  arrived (401, 404, 405, 413, ...) until the body has ended or the client has gone, briefly
  (``_RequestBody``): Hypercorn (0.18) closes such a connection from the app's task while its own
  task may be writing a 400 for the client's early EOF, and the two writes collide
  (``trio.BusyResourceError``, uncaught: the whole server stops).
- Adds security headers and ``X-Request-Id`` (the client's, else a new one) to every response
  (the security headers also to a WebSocket's 101), answers CORS preflights, counts requests
  and writes one access log line per request.
- Resolves the client's address behind trusted proxies once per request, into the scope
  (``gateway.client_address``), for everything downstream and the access log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import sniffio
import trio
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

from gateway.client_address import ProxyNetwork, resolve_scope, scope_client
from gateway.cors import CorsPolicy
from gateway.http.direct import DirectRoutes
from gateway.http.exchange import Exchange
from gateway.logs import access_logger, request_id_from, reset_request_id, set_request_id
from gateway.metrics import Metrics

REQUEST_LOG = "gateway.request_log"
TRIO_REQUIRED = (
    "Gateway needs Hypercorn's trio worker: start it with `hypercorn -k trio gateway.app:app` "
    "(or use `gateway serve`)."
)
# How long, and for how many more body bytes, an early answer waits for the request body to
# end or the client to leave before it completes anyway (see ``_RequestBody``).
_EARLY_ANSWER_WAIT = 0.25
_EARLY_ANSWER_BYTES = 1 << 20
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class LogSource(Protocol):
    """Something a request did that its access log line reports (its agent run)."""

    def log_fields(self) -> dict[str, object]: ...


@dataclass(slots=True, eq=False)
class RequestLog:
    """What the access log line of one request says beyond method, path and status."""

    request_id: str
    run: LogSource | None = None


def request_log(scope: Mapping[str, object]) -> RequestLog | None:
    return cast(RequestLog | None, scope.get(REQUEST_LOG))


def _header(scope: Scope, name: bytes) -> str | None:
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", ())  # type: ignore[assignment]
    for key, value in headers:
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class GatewayASGI:
    """Wraps the Quart app; see the module docstring."""

    def __init__(
        self,
        app: Any,
        *,
        direct: DirectRoutes | None = None,
        metrics: Metrics | None = None,
        cors: CorsPolicy | None = None,
        trusted_proxies: tuple[ProxyNetwork, ...] = (),
    ) -> None:
        self.app = app
        self.direct = direct
        self.metrics = metrics
        self.cors = cors.active() if cors is not None else None
        self.trusted_proxies = trusted_proxies

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if sniffio.current_async_library() != "trio":
            await _refuse(scope, receive, send)
            return
        if self.trusted_proxies and scope["type"] in ("http", "websocket"):
            resolve_scope(cast(dict[str, object], scope), self.trusted_proxies)
        if scope["type"] == "websocket":
            await self.app(scope, receive, _with_security_headers(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        log = RequestLog(request_id_from(_header(scope, b"x-request-id")))
        token = set_request_id(log.request_id)
        body = _RequestBody(receive)
        extra = [*_SECURITY_HEADERS, (b"x-request-id", log.request_id.encode())]
        origin = _header(scope, b"origin") if self.cors is not None else None
        if origin is not None and self.cors is not None:
            if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
                allowed = self.cors.preflight(
                    origin, _header(scope, b"access-control-request-headers") or ""
                )
                if allowed is not None:
                    await send({"type": "http.response.start", "status": 204,
                                "headers": [*allowed, *extra]})  # fmt: skip
                    await body.settle(drain=True)
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    self._done(scope, log, 204, 0, time.monotonic(), True)
                    reset_request_id(token)
                    return
            extra += self.cors.response_headers(origin)
        outcome = _Outcome()
        route = self.direct.match(scope["path"]) if self.direct is not None else None
        # Quart's own receive loop drains a body its route did not read; a direct route has
        # nobody else reading, so an early answer drains it here.
        drain = route is not None

        async def send_wrapper(message: ASGISendEvent) -> None:
            final = False
            if message["type"] == "http.response.start":
                outcome.status = message["status"]
                message["headers"] = [*message["headers"], *extra]
            elif message["type"] == "http.response.body":
                outcome.bytes += len(message.get("body", b""))
                final = not message.get("more_body")
            if outcome.gone:
                return
            if final:
                await body.settle(drain=drain)
            try:
                if final:
                    # quart-trio cancels the request scope on the post-response disconnect;
                    # unshielded, the final send would kill Hypercorn's keep-alive idle timer.
                    with trio.CancelScope(shield=True):
                        await send(message)
                else:
                    await send(message)  # the per-chunk path: no cancel scope of its own
            except trio.BusyResourceError:
                # Hypercorn's reading task is shutting the socket (the client closed with its
                # request unfinished, see ``_RequestBody``): the client is gone, and Hypercorn
                # takes nothing more for this request.
                outcome.gone = True
                return
            if final:
                outcome.complete = True

        started = time.monotonic()
        scope_dict = cast(dict[str, object], scope)
        scope_dict[REQUEST_LOG] = log
        try:
            async with trio.open_nursery() as nursery:
                try:
                    if route is not None and self.direct is not None:
                        exchange = Exchange(scope, body.receive, send_wrapper)
                        await self.direct.serve(route, exchange, nursery)
                    else:
                        await self.app(scope, body.receive, send_wrapper)
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._done(scope, log, outcome.status, outcome.bytes, started, outcome.complete)
            reset_request_id(token)

    def _done(
        self, scope: Scope, log: RequestLog, status: int | None, sent: int, started: float,
        complete: bool,
    ) -> None:  # fmt: skip
        path = str(scope.get("path", ""))
        method = str(scope.get("method", ""))
        if self.metrics is not None:
            self.metrics.request_done(path, method, status if status is not None else "-")
        if access_logger.isEnabledFor(logging.INFO):
            fields: dict[str, object] = {
                "method": method,
                "path": path,
                "client": scope_client(scope),
                "status": status,
                "bytes": sent,
                "duration_ms": round((time.monotonic() - started) * 1000, 2),
                "complete": complete,
            }
            if log.run is not None:
                fields.update(log.run.log_fields())
            access_logger.info("request", extra=fields)


class _RequestBody:
    """The request's ``receive``, watched: ``settled`` once the body has ended or the client
    has gone.

    Why: when an answer ends before the request body was all received, Hypercorn (0.18)
    closes the connection from the app's task (``send_eof``) while its reading task, if the
    client has just closed with the body unfinished, writes a 400: the two overlap on one
    socket, ``trio.BusyResourceError`` escapes Hypercorn and ends ``serve`` (a client with no
    token could stop the gateway in a few requests). Waiting until the body ends (the
    connection is then recycled, not closed) or the client's close has been handled (its
    ``http.disconnect``) keeps the two apart. The wait is bounded, so an answer to a client that
    keeps sending (or stalls) completes as before; the client has its whole answer already,
    only the end of the exchange waits.
    """

    def __init__(self, receive: ASGIReceiveCallable) -> None:
        self._receive = receive
        self._settled = False
        self._wakeup: trio.Event | None = None  # made only for a wait (rare)
        self._late_bytes = 0

    async def receive(self) -> ASGIReceiveEvent:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self._settle()
        elif self._wakeup is not None:
            self._late_bytes += len(message.get("body", b""))
            if self._late_bytes > _EARLY_ANSWER_BYTES:
                self._settle()
        return message

    def _settle(self) -> None:
        self._settled = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def settle(self, *, drain: bool) -> None:
        """Wait (bounded) until the body has ended or the client has gone; ``drain``: read
        and drop the body here (nobody else reads it)."""
        if self._settled:
            return
        self._wakeup = trio.Event()
        with trio.move_on_after(_EARLY_ANSWER_WAIT):
            if drain:
                while not self._settled:
                    await self.receive()
            else:
                await self._wakeup.wait()


def _with_security_headers(send: ASGISendCallable) -> ASGISendCallable:
    """``send`` adding the security headers to a WebSocket's 101 (or its HTTP refusal)."""

    async def send_wrapper(message: ASGISendEvent) -> None:
        if message["type"] in ("websocket.accept", "websocket.http.response.start"):
            headers = message.get("headers") or []
            message["headers"] = [*headers, *_SECURITY_HEADERS]
        await send(message)

    return send_wrapper


@dataclass(slots=True)
class _Outcome:
    status: int | None = None
    bytes: int = 0
    complete: bool = False
    gone: bool = False


async def _refuse(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": TRIO_REQUIRED})
        return
    raise RuntimeError(TRIO_REQUIRED)
