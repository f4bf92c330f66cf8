"""Registering the HTTP routes and error handlers on the Quart app.

Every route takes every method and answers 405 itself (with its own ``Allow``), before
authentication, as the contract wants; the shared checks live in ``gateway.http.guard``. Paths
that only a WebSocket route matches (``/`` and everything else) do not exist for HTTP: plain 404.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing.exceptions import WebsocketMismatch

from gateway.agents.runtime import AgentRuntime
from gateway.errors import GatewayError, error_body
from gateway.http.chat import ChatCompletions
from gateway.http.common import json_response, method_not_allowed, not_found
from gateway.http.direct import DirectRoutes
from gateway.http.embeddings import Embeddings
from gateway.http.guard import View, guarded
from gateway.http.health import Probes
from gateway.http.history_stream import HistoryStreams
from gateway.http.models import Models
from gateway.http.responses import ResponsesApi
from gateway.http.sessions import Sessions
from gateway.metrics import Metrics
from gateway.sessions.responses import ResponseStore
from gateway.settings import Settings

logger = logging.getLogger("gateway")

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
READ = ("GET", "HEAD")
WRITE = ("POST",)


class MetricsEndpoint:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def handle(self) -> Response:
        return Response(self.metrics.render(), content_type=self.metrics.content_type)


@dataclass(slots=True)
class Routes:
    """The route handlers and the settings they read per request, so that a reload can hand
    them new settings."""

    settings: Settings
    chat: ChatCompletions
    responses: ResponsesApi
    models: Models
    embeddings: Embeddings
    # The open live history streams (a shutdown ends them).
    history: HistoryStreams = field(default_factory=HistoryStreams)

    def configure(self, settings: Settings) -> None:
        self.settings = settings
        self.chat.http = settings.gateway.http
        self.responses.http = settings.gateway.http
        self.embeddings.http = settings.gateway.http
        self.models.agents = settings.agents

    def chat_enabled(self) -> bool:
        return self.settings.gateway.http.chat_completions.enabled

    def responses_enabled(self) -> bool:
        return self.settings.gateway.http.responses.enabled

    def models_enabled(self) -> bool:
        """``/v1/models`` is served when either completion API is on."""
        return self.chat_enabled() or self.responses_enabled()

    def heartbeat_seconds(self) -> float:
        return self.settings.gateway.http.heartbeat_seconds


def register_routes(
    quart: QuartTrio,
    direct: DirectRoutes,
    settings: Settings,
    runtime: AgentRuntime,
    responses: ResponseStore,
    is_ready: Callable[[], bool],
    stores_ok: Callable[[], Awaitable[bool]],
    metrics: Metrics | None,
) -> Routes:
    """The Quart routes on ``quart``, the hot API routes on ``direct`` (both guarded by
    ``direct.guard``)."""
    http = settings.gateway.http
    guard = direct.guard
    routes = Routes(
        settings,
        ChatCompletions(http, runtime),
        ResponsesApi(http, runtime, responses),
        Models(settings.agents),
        Embeddings(http, runtime),
    )
    probes = Probes(is_ready, stores_ok)
    sessions = Sessions(runtime, routes.heartbeat_seconds, routes.history)

    def route(
        path: str,
        name: str,
        view: View,
        methods: tuple[str, ...],
        *,
        auth: bool = True,
        enabled: Callable[[], bool] | None = None,
    ) -> None:
        handler = guarded(view, methods, guard=guard if auth else None, enabled=enabled)
        quart.add_url_rule(
            path, name, handler, methods=ALL_METHODS, provide_automatic_options=False
        )

    chat_enabled, models_enabled = routes.chat_enabled, routes.models_enabled
    responses_enabled = routes.responses_enabled
    direct.add("/v1/chat/completions", routes.chat, WRITE, enabled=chat_enabled)
    direct.add("/v1/responses", routes.responses, WRITE, enabled=responses_enabled)
    direct.add("/v1/embeddings", routes.embeddings, WRITE, enabled=chat_enabled)
    route("/v1/responses/<response_id>", "response", routes.responses.retrieve,
          ("GET", "HEAD", "DELETE"), enabled=responses_enabled)  # fmt: skip
    route("/v1/responses/<response_id>/input_items", "response_input_items",
          routes.responses.input_items, READ, enabled=responses_enabled)  # fmt: skip
    route("/v1/models", "models", routes.models.list, READ, enabled=models_enabled)
    route("/v1/models/<path:model_id>", "model", routes.models.get, READ, enabled=models_enabled)
    route("/sessions/<path:key>/history", "session_history", sessions.history, READ)
    route("/sessions/<path:key>/kill", "session_kill", sessions.kill, WRITE)
    for path in ("/health", "/healthz"):
        route(path, path, probes.live, READ, auth=False)
    for path in ("/ready", "/readyz"):
        route(path, path, probes.ready, READ, auth=False)
    if metrics is not None:
        endpoint = MetricsEndpoint(metrics)
        route("/metrics", "metrics", endpoint.handle, READ, auth=http.metrics.auth)

    # Werkzeug answers an HTTP request that only a WebSocket rule matches with 400 (GET, HEAD,
    # OPTIONS) or 405 (other methods): to HTTP such a path does not exist.
    @quart.errorhandler(WebsocketMismatch)
    async def http_on_websocket_path(error: WebsocketMismatch) -> Response:
        return not_found()

    @quart.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        if error.code == 404:
            return not_found()
        if isinstance(error, MethodNotAllowed):
            if only_websocket_routes(quart, request.path):
                return not_found()
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

    return routes


def only_websocket_routes(quart: QuartTrio, path: str) -> bool:
    """Whether no HTTP route, only a WebSocket one, matches ``path``."""
    try:
        quart.url_map.bind("localhost").match(path, method="GET", websocket=False)
    except WebsocketMismatch:
        return True
    except HTTPException:
        return False
    return False
