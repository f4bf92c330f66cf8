"""The routes served on ASGI directly (the hot path, see ``gateway.http.exchange``), behind the
same preamble as the Quart routes (``gateway.http.guard``): the endpoint is enabled (else the
plain 404 of an unknown path), the method is allowed (else 405 with ``Allow``, before auth),
the client is authenticated (else 401, or 429 while locked out). Then the handler runs; a
``GatewayError`` it raises is answered as an OpenAI error body, a bug as a generic 500 (details
in the log only)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from gateway.errors import GatewayError, error_body
from gateway.http.common import AuthGuard
from gateway.http.exchange import ClientGone, Exchange, json_bytes

logger = logging.getLogger("gateway")

Handler = Callable[[Exchange, trio.Nursery], Awaitable[None]]

_NOT_FOUND = (
    404,
    b"Not Found",
    [(b"content-type", b"text/plain; charset=utf-8")],
)


@dataclass(frozen=True, slots=True)
class DirectRoute:
    handler: Handler
    methods: tuple[str, ...]
    enabled: Callable[[], bool] | None
    auth: bool


class DirectRoutes:
    """Exact paths to handlers; ``serve`` applies the preamble."""

    def __init__(self, guard: AuthGuard) -> None:
        self.guard = guard
        self._routes: dict[str, DirectRoute] = {}

    def add(
        self,
        path: str,
        handler: Handler,
        methods: tuple[str, ...],
        *,
        enabled: Callable[[], bool] | None = None,
        auth: bool = True,
    ) -> None:
        self._routes[path] = DirectRoute(handler, methods, enabled, auth)

    def match(self, path: str) -> DirectRoute | None:
        return self._routes.get(path)

    async def serve(self, route: DirectRoute, exchange: Exchange, nursery: trio.Nursery) -> None:
        """Answer one request on ``route``; ``nursery`` is the request's."""
        if route.enabled is not None and not route.enabled():
            await exchange.respond(*_NOT_FOUND)
            return
        if exchange.method not in route.methods:
            error = GatewayError("Method Not Allowed", status=405, type_="invalid_request_error")
            await exchange.respond_error(error, {"Allow": ", ".join(route.methods)})
            return
        if route.auth:
            denied = self.guard.check(
                exchange.header(b"authorization"), exchange.client_host, exchange.server_host
            )
            if denied is not None:
                await exchange.respond_error(denied)
                return
        try:
            await route.handler(exchange, nursery)
        except ClientGone:
            return
        except GatewayError as error:
            if not exchange.started:
                await exchange.respond_error(error)
        except Exception:
            logger.exception("unhandled error")
            if not exchange.started:
                body = json_bytes(error_body("Internal server error", "server_error"))
                await exchange.respond(500, body, [(b"content-type", b"application/json")])
