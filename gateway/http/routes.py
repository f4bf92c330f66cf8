"""Registering the HTTP routes and error handlers on the Quart app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from gateway.agents.run import AgentRuntime
from gateway.errors import GatewayError, error_body
from gateway.http.chat import ChatCompletions
from gateway.http.common import AuthGuard, json_response, method_not_allowed, not_found
from gateway.http.health import Probes
from gateway.http.models import Models
from gateway.http.sessions import Sessions
from gateway.metrics import Metrics
from gateway.settings import Settings

logger = logging.getLogger("gateway")

# Every route takes every method and answers 405 itself: the contract wants 405 (with the
# route's own Allow header) before authentication.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class MetricsEndpoint:
    def __init__(self, metrics: Metrics, guard: AuthGuard | None) -> None:
        self.metrics = metrics
        self.guard = guard

    async def handle(self) -> Response:
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed("GET, HEAD")
        if self.guard is not None:
            denied = self.guard(request)
            if denied is not None:
                return denied
        return Response(self.metrics.render(), content_type=self.metrics.content_type)


@dataclass(frozen=True, slots=True)
class Routes:
    """The route handlers, so that a reload can hand them new settings."""

    chat: ChatCompletions
    models: Models

    def configure(self, settings: Settings) -> None:
        self.chat.http = settings.gateway.http
        self.models.http = settings.gateway.http
        self.models.agents = settings.agents


def register_routes(
    quart: QuartTrio,
    settings: Settings,
    runtime: AgentRuntime,
    guard: AuthGuard,
    is_ready: Callable[[], bool],
    metrics: Metrics | None,
) -> Routes:
    http = settings.gateway.http
    chat = ChatCompletions(http, guard, runtime)
    models = Models(http, guard, settings.agents)
    probes = Probes(is_ready, runtime.store.ping)
    sessions = Sessions(guard, runtime)

    def route(path: str, name: str, view: Callable[..., Awaitable[Response]]) -> None:
        quart.add_url_rule(path, name, view, methods=ALL_METHODS, provide_automatic_options=False)

    route("/v1/chat/completions", "chat", chat.handle)
    route("/v1/models", "models", models.list)
    route("/v1/models/<path:model_id>", "model", models.get)
    route("/sessions/<path:key>/history", "session_history", sessions.history)
    route("/sessions/<path:key>/kill", "session_kill", sessions.kill)
    for path in ("/health", "/healthz"):
        route(path, path, probes.live)
    for path in ("/ready", "/readyz"):
        route(path, path, probes.ready)
    if metrics is not None:
        endpoint = MetricsEndpoint(metrics, guard if http.metrics.auth else None)
        route("/metrics", "metrics", endpoint.handle)

    @quart.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        if error.code == 404:
            return not_found()
        if isinstance(error, MethodNotAllowed):
            return method_not_allowed(", ".join(error.valid_methods or []))
        status = error.code or 500
        kind = "invalid_request_error" if status < 500 else "server_error"
        return json_response(error_body(error.description or error.name, kind), status)

    @quart.errorhandler(Exception)
    async def unhandled(error: Exception) -> Response:
        if isinstance(error, GatewayError):
            return json_response(error.body(), error.status, error.headers())
        logger.exception("unhandled error", exc_info=error)
        return json_response(error_body("Internal server error", "server_error"), 500)

    return Routes(chat, models)
