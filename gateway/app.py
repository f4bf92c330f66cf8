"""Wiring: ``create_app(settings, ...)`` builds the ASGI app; ``app`` is the Hypercorn entry point.

``hypercorn -k trio gateway.app:app`` loads the configuration named by ``OPENCLAW_CONFIG_PATH``
(else ``~/.openclaw/openclaw.json``, else defaults) when the server starts, not at import.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any

import sniffio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from gateway.agents.run import AgentRuntime
from gateway.asgi import TRIO_REQUIRED, GatewayASGI
from gateway.auth import Authenticator
from gateway.config import ConfigError, load_settings
from gateway.errors import GatewayError, error_body
from gateway.http.chat import ChatCompletions
from gateway.http.common import AuthGuard, json_response, method_not_allowed, not_found
from gateway.http.health import Probes
from gateway.http.models import Models
from gateway.http.sessions import Sessions
from gateway.providers.registry import ProviderRegistry
from gateway.sessions.base import SessionStore
from gateway.settings import Settings

logger = logging.getLogger("gateway")

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(slots=True)
class Lifecycle:
    """Whether the app is ready to serve (false while starting and during shutdown)."""

    ready: bool = False


@dataclass(frozen=True, slots=True)
class Gateway:
    """What ``create_app`` built: the ASGI app and the parts tests and tools look into."""

    asgi: GatewayASGI
    quart: QuartTrio
    settings: Settings
    runtime: AgentRuntime
    lifecycle: Lifecycle


def create_app(
    settings: Settings,
    *,
    providers: ProviderRegistry | None = None,
    store: SessionStore | None = None,
) -> Gateway:
    """Build the app. ``providers`` and ``store`` default to those the settings describe."""
    if providers is None:
        providers = ProviderRegistry.from_settings(settings.providers)
    if store is None:
        from gateway.sessions.sqlite import SQLiteSessionStore

        store = SQLiteSessionStore(
            settings.gateway_dir, max_concurrent=settings.agents.defaults.max_concurrent
        )
    quart = QuartTrio("gateway")
    http = settings.gateway.http
    # Streams run as long as the model talks; Quart's default 60 s would cut them.
    quart.config["RESPONSE_TIMEOUT"] = None
    quart.config["MAX_CONTENT_LENGTH"] = http.chat_completions.max_body_bytes
    quart.config["BODY_TIMEOUT"] = max(1, int(http.body_timeout_seconds))
    lifecycle = Lifecycle()
    runtime = AgentRuntime(settings.agents, providers, store)
    guard = AuthGuard(Authenticator(settings.gateway.auth))

    chat = ChatCompletions(http, guard, runtime)
    models = Models(http, guard, settings.agents)
    probes = Probes(lambda: lifecycle.ready)
    sessions = Sessions(guard, store)
    route = quart.add_url_rule
    route("/v1/chat/completions", "chat", chat.handle, methods=ALL_METHODS,
          provide_automatic_options=False)  # fmt: skip
    route("/v1/models", "models", models.list, methods=ALL_METHODS, provide_automatic_options=False)
    route("/v1/models/<path:model_id>", "model", models.get, methods=ALL_METHODS,
          provide_automatic_options=False)  # fmt: skip
    route("/sessions/<path:key>/history", "session_history", sessions.history,
          methods=ALL_METHODS, provide_automatic_options=False)  # fmt: skip
    route("/sessions/<path:key>/kill", "session_kill", sessions.kill, methods=ALL_METHODS,
          provide_automatic_options=False)  # fmt: skip
    for path in ("/health", "/healthz"):
        route(path, path, probes.live, methods=ALL_METHODS, provide_automatic_options=False)
    for path in ("/ready", "/readyz"):
        route(path, path, probes.ready, methods=ALL_METHODS, provide_automatic_options=False)

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

    @quart.before_serving
    async def startup() -> None:
        # The store's background work (kill polling, lease upkeep) lives in the app's lifespan.
        await quart.nursery.start(store.serve)
        lifecycle.ready = True

    @quart.after_serving
    async def shutdown() -> None:
        lifecycle.ready = False
        await providers.aclose()
        await store.aclose()

    # The WebSocket protocol on every path HTTP routes leave free; runs it detaches live in
    # the app's nursery (which exists while serving).
    return Gateway(GatewayASGI(quart), quart, settings, runtime, lifecycle)


class LazyApp:
    """The module-level ``app``: builds the gateway from the environment on first use.

    Reading the configuration at server start instead of at import keeps importing free of side
    effects and turns a configuration error into a clean startup failure with its message.
    """

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if self._app is None:
            problem = None
            try:
                if sniffio.current_async_library() != "trio":
                    raise ConfigError(TRIO_REQUIRED)
                self._app = create_app(load_settings()).asgi
            except ConfigError as error:
                problem = str(error)
            if problem is not None:
                # Said once, plainly, before Hypercorn reports the failed startup its own way.
                print(f"gateway: cannot start: {problem}", file=sys.stderr, flush=True)
                if scope["type"] == "lifespan":
                    await receive()
                    await send({"type": "lifespan.startup.failed", "message": problem})
                    return
                raise RuntimeError(problem)
        await self._app(scope, receive, send)


app = LazyApp()
