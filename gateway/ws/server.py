"""The WebSocket side of one app: its routes, its shared state and its shutdown.

``create_app`` builds one ``WebSocketGateway`` and calls ``register(quart)``: WebSocket upgrades
on ``/`` and on every other path are served here (HTTP requests keep their routes, and an HTTP
request to a path only a WebSocket route matches still gets the plain 404).

Hypercorn settings this relies on (see ``configure_hypercorn``):
- ``websocket_max_message_size``: Hypercorn closes with 1009 on its own above it (16 MiB by
  default, counted in characters for text). It must be at least ``policy.max_payload``; the
  gateway enforces its own limits (64 KiB before the handshake, ``maxPayload`` after) on each
  complete message Hypercorn hands over, so before the handshake Hypercorn still buffers a
  message up to its own limit before the gateway can refuse it.
- ``websocket_ping_interval``: the server's WebSocket pings (ASGI gives the app no way to ping).

Shutdown: Hypercorn tells the app nothing when it starts stopping (lifespan shutdown comes only
after every connection is gone), so ``shutdown()`` is for whoever triggers it (the ``gateway``
CLI's shutdown trigger). Without it, a connection still open at Hypercorn's graceful deadline
gets the same ``shutdown`` event and close 1012 as it is cancelled.
"""

from __future__ import annotations

from collections.abc import Callable

import trio
from hypercorn.config import Config
from quart import websocket
from quart.wrappers import Websocket
from quart_trio import QuartTrio

from gateway import __version__
from gateway.agents.events import AbortReason
from gateway.agents.runtime import AgentRuntime
from gateway.auth import Authenticator
from gateway.settings import Settings
from gateway.ws.connection import Connection
from gateway.ws.handlers import Handlers
from gateway.ws.hub import Hub
from gateway.ws.protocol import Policy
from gateway.ws.runs import Runs

DEFAULT_PING_INTERVAL = 25.0


class WebSocketGateway:
    """Everything WebSocket connections of one app share. ``policy`` may be replaced (tests
    shorten its timers); connections read it when they open."""

    def __init__(
        self,
        settings: Settings,
        runtime: AgentRuntime,
        authenticator: Authenticator,
        *,
        app_nursery: Callable[[], trio.Nursery],
        hub: Hub | None = None,
        policy: Policy | None = None,
        version: str = __version__,
    ) -> None:
        self.authenticator = authenticator
        self.policy = policy or Policy()
        self.version = version
        self.hub = hub or Hub()
        self.runs = Runs(
            runtime,
            self.hub,
            detach_on_close=settings.gateway.ws.detach_runs_on_close,
            app_nursery=app_nursery,
        )
        self.handlers = Handlers(settings, runtime, self.hub, self.runs, version)
        self.stopping = False

    def configure(self, settings: Settings) -> None:
        """Use ``settings`` for new requests (a configuration reload). Agents and providers
        come from the runtime, auth from the shared authenticator: their owners reconfigure
        them. ``gateway.ws`` itself takes effect at the next start."""
        self.handlers.configure(settings)

    def register(self, quart: QuartTrio) -> None:
        """Route WebSocket upgrades on every path to ``handle`` (HTTP requests to those paths
        are the HTTP routes' to answer: see ``gateway.http.routes``)."""
        quart.add_websocket("/", "websocket", self.handle)
        quart.add_websocket("/<path:path>", "websocket_path", self.handle)

    async def handle(self, path: str = "") -> None:
        """The route handler: serve one connection until it closes."""
        # The real object behind Quart's context-local proxy: the connection outlives lookups.
        current: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]
        connection = Connection(self, current)
        await connection.serve()

    async def shutdown(self) -> None:
        """Abort the runs started over WebSocket, then send every connection a ``shutdown``
        event and close it with 1012. Refuses new connections from now on. Returns once the
        connections are closed, or after ``policy.shutdown_grace`` for each of the two steps."""
        self.stopping = True
        tickets = self.hub.in_flight()
        for ticket in tickets:
            self.runs.abort(
                [ticket],
                AbortReason.SHUTDOWN,
                session_key=ticket.session_key,
                run_id=ticket.run_id,
                stop_reason="shutdown",
            )
        grace = self.policy.shutdown_grace
        with trio.move_on_after(grace):
            for ticket in tickets:
                await ticket.done.wait()
        peers = [peer for peer in self.hub.peers if isinstance(peer, Connection)]
        for peer in peers:
            peer.request_shutdown()
        with trio.move_on_after(grace):
            for peer in peers:
                await peer.closed.wait()


def configure_hypercorn(config: Config, policy: Policy | None = None) -> Config:
    """Set the Hypercorn options the WebSocket protocol relies on (see the module docstring)."""
    policy = policy or Policy()
    config.websocket_max_message_size = max(config.websocket_max_message_size, policy.max_payload)
    if config.websocket_ping_interval is None:
        config.websocket_ping_interval = DEFAULT_PING_INTERVAL
    return config
