"""Wiring: ``create_app(settings, ...)`` builds the ASGI app; ``app`` is the Hypercorn entry point.

``hypercorn -k trio gateway.app:app`` loads the configuration named by ``OPENCLAW_CONFIG_PATH``
(else ``~/.openclaw/openclaw.json``, else defaults) when the server starts, not at import.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import sniffio
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from quart_trio import QuartTrio

from gateway.agents.events import AbortReason
from gateway.agents.runtime import AgentRuntime
from gateway.asgi import TRIO_REQUIRED, GatewayASGI
from gateway.auth import Authenticator
from gateway.config import ConfigError, load_settings
from gateway.cors import CorsPolicy
from gateway.errors import CannotStart
from gateway.http.common import AuthGuard
from gateway.http.direct import DirectRoutes
from gateway.http.routes import Routes, register_routes
from gateway.hypercorn_worker import HypercornWorker
from gateway.lifecycle import Background, Lifecycle, StopTiming
from gateway.listeners import local_port, tune_listener
from gateway.logs import configure_logging
from gateway.metrics import Metrics
from gateway.providers.registry import ProviderRegistry
from gateway.sessions.admission import Admission
from gateway.sessions.base import TranscriptStore
from gateway.sessions.responses import ResponseStore
from gateway.sessions.stores import open_stores
from gateway.settings import Settings
from gateway.ws import WebSocketGateway, hypercorn_stream

logger = logging.getLogger("gateway")

# How long aborted WebSocket connections get to receive their shutdown event and close frame.
GOODBYE_SECONDS = 1.0


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
        self.asgi.trusted_proxies = settings.gateway.trusted_proxies
        self.settings = settings
        logger.info("configuration reloaded")

    async def stop_runs(self, grace: float) -> None:
        """Steps 2 and 3 of a shutdown (see ``gateway.lifecycle``): let in-flight runs finish
        for ``grace`` seconds, then abort the rest and close the WebSocket connections and
        the live history streams."""
        with trio.move_on_after(grace):
            await self.runtime.wait_idle()
        aborted = self.runtime.abort_runs(AbortReason.SHUTDOWN)
        if aborted:
            logger.info("aborted %d run(s) still active after %g s", len(aborted), grace)
        with trio.move_on_after(GOODBYE_SECONDS):
            await self.ws.shutdown()
            # Live history followers first get the turns the aborted runs record as they end.
            await self.runtime.wait_idle()
        self.routes.history.close()

    def adopt_hypercorn(self, worker: HypercornWorker) -> None:
        """Launched by Hypercorn's CLI: follow its shutdown, within its --graceful-timeout, and
        give its listening sockets the same dead-peer options as ``gateway serve``."""
        grace = self.settings.gateway.shutdown_grace_seconds
        timing = StopTiming.for_hypercorn(grace, worker.graceful_timeout)
        if timing.grace < grace:
            logger.info(
                "in-flight runs get %g s on shutdown (gateway.shutdownGraceSeconds %g, Hypercorn "
                "--graceful-timeout %g): pass --graceful-timeout %d for the full grace",
                timing.grace, grace, worker.graceful_timeout, math.ceil(grace + 1),
            )  # fmt: skip
        self.lifecycle.timing = timing
        self.lifecycle.hypercorn = worker
        for sock in worker.sockets:
            tune_listener(sock)
            port = local_port(sock)
            if port is not None:
                self.lifecycle.listen_ports.add(port)


def create_app(
    settings: Settings,
    *,
    providers: ProviderRegistry | None = None,
    transcripts: TranscriptStore | None = None,
    admission: Admission | None = None,
    responses: ResponseStore | None = None,
    shared: bool = False,
) -> Gateway:
    """Build the app. ``providers``, ``transcripts`` and ``admission`` default to those the
    settings describe; ``shared``: this process is one of several serving the same state (its
    admission is then shared from the start, see ``gateway.sessions.state_admission``)."""
    if providers is None:
        providers = ProviderRegistry.from_settings(settings.providers)
    stores = open_stores(
        settings, shared=shared, transcripts=transcripts, responses=responses, admission=admission
    )
    hypercorn_stream.install()  # close frames on WebSocket protocol errors (RFC 6455)
    quart = QuartTrio("gateway")
    http = settings.gateway.http
    # Streams run as long as the model talks; Quart's default 60 s would cut them.
    quart.config["RESPONSE_TIMEOUT"] = None
    quart.config["MAX_CONTENT_LENGTH"] = http.chat_completions.max_body_bytes
    quart.config["BODY_TIMEOUT"] = max(1, int(http.body_timeout_seconds))
    metrics = Metrics() if http.metrics.enabled else None
    runtime = AgentRuntime(
        settings.agents, providers, stores.transcripts, stores.admission, observer=metrics
    )
    guard = AuthGuard(Authenticator(settings.gateway.auth))
    # The WebSocket protocol on every path HTTP routes leave free; runs it detaches live in
    # the app's nursery (which exists while serving).
    ws = WebSocketGateway(settings, runtime, guard.authenticator, app_nursery=lambda: quart.nursery)
    grace = settings.gateway.shutdown_grace_seconds
    # By default the timing of ``gateway serve`` (whose Hypercorn waits grace + 1 s).
    lifecycle = Lifecycle(stop=_unset_stop, timing=StopTiming.for_serve(grace, grace + 1))
    direct = DirectRoutes(guard)
    housekeeping = Background()
    routes = register_routes(
        quart,
        direct,
        settings,
        runtime,
        stores.responses,
        lambda: lifecycle.ready,
        stores.ping,
        metrics,
    )
    ws.register(quart)
    if stores.relay is not None and stores.connect_relay is not None:
        # Session events reach the WebSocket followers on every host.
        ws.hub.relay = stores.relay
        stores.connect_relay(ws.hub.deliver_remote)
    asgi = GatewayASGI(
        quart,
        direct=direct,
        metrics=metrics,
        cors=CorsPolicy(http.cors_allow_origins),
        trusted_proxies=settings.gateway.trusted_proxies,
    )
    gateway = Gateway(
        asgi, quart, settings, runtime, lifecycle, ws, metrics, routes, guard.authenticator
    )
    lifecycle.stop = gateway.stop_runs

    @quart.before_serving
    async def startup() -> None:
        # The stores' background work (other processes' releases and kills, the database
        # listener) and the shutdown watchers live in the app's lifespan.
        try:
            await quart.nursery.start(housekeeping.serve, stores.serve)
        except* CannotStart as refused:
            problem = str(refused.exceptions[0])
            print(f"gateway: cannot start: {problem}", file=sys.stderr, flush=True)
            raise RuntimeError(problem) from None
        await quart.nursery.start(lifecycle.serve)
        await quart.nursery.start(housekeeping.serve, routes.responses.serve_pruning)
        lifecycle.ready = True

    @quart.after_serving
    async def shutdown() -> None:
        lifecycle.close()
        housekeeping.close()
        await providers.aclose()
        await stores.aclose()

    return gateway


async def _unset_stop(grace: float) -> None:
    raise RuntimeError("the lifecycle's stop procedure was not set")


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
            worker = HypercornWorker.current()
            try:
                if sniffio.current_async_library() != "trio":
                    raise ConfigError(TRIO_REQUIRED)
                settings = load_settings()
                configure_logging(settings.logging.format, settings.logging.level)
                gateway = create_app(settings, shared=worker is not None and worker.workers > 1)
                if worker is not None:
                    gateway.adopt_hypercorn(worker)
                self._app = gateway.asgi
            except ConfigError as error:
                problem = str(error)
            if problem is not None:
                # Said once, plainly, before Hypercorn reports the failed startup its own way.
                print(f"gateway: cannot start: {problem}", file=sys.stderr, flush=True)
                if worker is not None:
                    worker.fail_startup()
                if scope["type"] == "lifespan":
                    await receive()
                    await send({"type": "lifespan.startup.failed", "message": problem})
                    return
                raise RuntimeError(problem)
        app = self._app
        assert app is not None
        await app(scope, receive, send)


app = LazyApp()
