"""Response helpers and the authentication guard shared by the HTTP routes."""

from __future__ import annotations

import json
import logging
from typing import Any

from quart import Request, Response

from gateway.auth import Authenticator, bearer_secret, is_loopback
from gateway.client_address import scope_client
from gateway.errors import GatewayError, InvalidRequest, error_body

logger = logging.getLogger("gateway.http")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # ``backslashreplace`` turns a lone surrogate (from a model's output) into its JSON escape
    # ``\\udXXX`` instead of failing the response.
    data = _dumps(body).encode("utf-8", "backslashreplace")
    return Response(data, status=status, headers=headers, content_type="application/json")


def error_response(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    return json_response(error.body(), error.status, {**error.headers(), **(headers or {})})


def not_found() -> Response:
    """The answer for an unknown path or a disabled endpoint: plain ``Not Found``."""
    return Response("Not Found", status=404, content_type="text/plain; charset=utf-8")


def query_limit(raw: str | None, *, default: int, maximum: int) -> int:
    """A ``limit`` query parameter: ``default`` when absent or empty, else an integer from 1
    to ``maximum`` (``InvalidRequest`` otherwise)."""
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= maximum:
        raise InvalidRequest(f"`limit` must be an integer from 1 to {maximum}.", param="limit")
    return limit


def method_not_allowed(allow: str) -> Response:
    body = error_body("Method Not Allowed", "invalid_request_error")
    return json_response(body, 405, {"Allow": allow})


class AuthGuard:
    """Applies the shared-secret check to an HTTP request."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def check(
        self, authorization: str | None, client: str | None, server: str | None
    ) -> GatewayError | None:
        """``None`` when a request with this ``Authorization`` header, from ``client`` to the
        listener at ``server``, may proceed; else the 401/429 error to answer with."""
        if self.authenticator.mode == "none" and server and not is_loopback(server):
            logger.error("auth mode none refused on a non-loopback listener (%s)", server)
            return _unauthorized()
        result = self.authenticator.check(bearer_secret(authorization), client)
        if result.ok:
            return None
        if result.outcome == "locked":
            return GatewayError(
                "Too many failed authentication attempts; try again later.",
                status=429,
                type_="rate_limited",
                retry_after=result.retry_after,
            )
        return _unauthorized()

    def __call__(self, request: Request) -> Response | None:
        """``None`` when the Quart ``request`` may proceed, else the response to send."""
        server = request.scope.get("server")
        denied = self.check(
            request.headers.get("Authorization"),
            scope_client(request.scope),
            server[0] if server else None,
        )
        return error_response(denied) if denied is not None else None


def _unauthorized() -> GatewayError:
    return GatewayError("Unauthorized", status=401, type_="unauthorized")
