"""Wiring: ``create_app(settings, ...)`` builds the ASGI app; ``app`` is the Hypercorn entry point.

``hypercorn -k trio gateway.app:app`` loads the configuration named by ``OPENCLAW_CONFIG_PATH``
(else ``~/.openclaw/openclaw.json``, else defaults) when the server starts, not at import.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

import sniffio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart_trio import QuartTrio

from gateway.agents.run import AgentRuntime
from gateway.asgi import TRIO_REQUIRED, GatewayASGI
from gateway.auth import Authenticator
from gateway.config import ConfigError, load_settings
from gateway.cors import CorsPolicy
from gateway.http.common import AuthGuard
from gateway.http.routes import Routes, register_routes
from gateway.logs import configure_logging
from gateway.metrics import Metrics
from gateway.providers.registry import ProviderRegistry
from gateway.sessions.base import SessionStore
from gateway.settings import Settings
from gateway.ws import WebSocketGateway

logger = logging.getLogger("gateway")


@dataclass(slots=True)
class Lifecycle:
    """Whether the app is ready to serve (false while starting and during shutdown)."""

    ready: bool = False


# Settings a running server cannot change: a reload that changes them logs that they wait for
# a restart.
_RESTART_ONLY: dict[str, Callable[[Settings], object]] = {
    "gateway.port / gateway.bind": lambda s: (s.gateway.port, s.gateway.bind_host),
    "gateway.http.metrics": lambda s: s.gateway.http.metrics,
    "gateway.ws": lambda s: s.gateway.ws,
    "gateway.shutdownGraceSeconds": lambda s: s.gateway.shutdown_grace_seconds,
    "agents.defaults.maxConcurrent": lambda s: s.agents.defaults.max_concurrent,
    "logging": lambda s: s.logging,
    "state directory": lambda s: s.state_dir,
}


@dataclass(slots=True, eq=False)
class Gateway:
    """What ``create_app`` built: the ASGI app and the parts tests and tools look into."""

    asgi: GatewayASGI
    quart: QuartTrio
    settings: Settings
    runtime: AgentRuntime
    lifecycle: Lifecycle
    ws: WebSocketGateway
    metrics: Metrics | None
    routes: Routes
    authenticator: Authenticator

    def reload(self, settings: Settings, providers: ProviderRegistry | None = None) -> None:
        """Serve new requests with ``settings`` (agents, providers, auth, HTTP options).

        Requests and runs already going keep what they started with; the replaced providers
        close once their last run ends. Settings that need a restart are logged and ignored.
        """
        for name, read in _RESTART_ONLY.items():
            if read(settings) != read(self.settings):
                logger.warning("reload: %s changed; it takes effect after a restart", name)
        old = self.runtime.configure(
            settings.agents, providers or ProviderRegistry.from_settings(settings.providers)
        )
        self.quart.nursery.start_soon(old.aclose_when_unused)
        self.authenticator.configure(settings.gateway.auth)
        self.routes.configure(settings)
        self.ws.configure(settings)
        self.asgi.cors = CorsPolicy(settings.gateway.http.cors_allow_origins).active()
        self.settings = settings
        logger.info("configuration reloaded")


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
    metrics = Metrics() if http.metrics.enabled else None
    runtime = AgentRuntime(settings.agents, providers, store, observer=metrics)
    guard = AuthGuard(Authenticator(settings.gateway.auth))
    routes = register_routes(quart, settings, runtime, guard, lambda: lifecycle.ready, metrics)

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
    ws = WebSocketGateway(settings, runtime, guard.authenticator, app_nursery=lambda: quart.nursery)
    ws.register(quart)
    asgi = GatewayASGI(quart, metrics=metrics, cors=CorsPolicy(http.cors_allow_origins))
    return Gateway(
        asgi, quart, settings, runtime, lifecycle, ws, metrics, routes, guard.authenticator
    )


class LazyApp:
    """The module-level ``app``: builds the gateway from the environment on first use.

    Reading the configuration at server start instead of at import keeps importing free of side
    effects and turns a configuration error into a clean startup failure with its message.
    """

    def __init__(self) -> None:
        self._app: GatewayASGI | None = None

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if self._app is None:
            problem = None
            try:
                if sniffio.current_async_library() != "trio":
                    raise ConfigError(TRIO_REQUIRED)
                settings = load_settings()
                configure_logging(settings.logging.format, settings.logging.level)
                self._app = create_app(settings).asgi
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
        app = self._app
        assert app is not None
        await app(scope, receive, send)


app = LazyApp()
