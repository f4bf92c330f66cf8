"""One WebSocket connection, driven by trio: the handshake, the reader, the writer and the tick.

Tasks, all in the connection's nursery (which quart-trio cancels when the client goes away):

- the reader (the handler's own task) parses frames and starts one task per request, at most
  ``policy.max_requests_in_flight`` at once (beyond that it stops reading: backpressure);
- the writer drains the outbox into the socket, in order, and ends the connection once it has
  written a close frame and the client has answered it with its own (or
  ``policy.close_timeout`` passed): the TCP connection outlives every frame the client reads;
- the ticker queues a ``tick`` event every ``policy.tick_interval``;
- the runs this connection started (see ``runs``), unless runs are detached.

WebSocket pings are Hypercorn's (``websocket_ping_interval``); it also answers the client's
pings and echoes the client's close frame (an empty close gets an empty close back).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import trio
from quart.wrappers import Websocket

from gateway.auth import AuthResult, is_loopback
from gateway.client_address import scope_client
from gateway.ws.handshake import Accepted, Handshake, Rejected, ServerInfo, hello_ok
from gateway.ws.methods import ANSWERED, METHODS, authorize
from gateway.ws.outbox import CloseFrame, Outbox
from gateway.ws.protocol import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_SERVICE_RESTART,
    INVALID_REQUEST,
    UNAVAILABLE,
    FrameError,
    Request,
    WsError,
    error_response,
    ok_response,
    parse_request,
    too_large,
)
from gateway.ws.runs import now_ms

if TYPE_CHECKING:
    from gateway.ws.server import WebSocketGateway

logger = logging.getLogger("gateway.ws")

EVENTS = ("connect.challenge", "agent", "chat", "tick", "shutdown")
_SHUTDOWN_PAYLOAD = {"reason": "gateway stopping", "restartExpectedMs": None}
# How long a connection cancelled from outside may spend saying goodbye.
_GOODBYE_SECONDS = 0.5


class Connection:
    """A client connection. ``conn_id`` and ``outbox`` are what the hub and handlers use."""

    def __init__(self, server: WebSocketGateway, websocket: Websocket) -> None:
        self.server = server
        self.websocket = websocket
        self.policy = server.policy
        self.conn_id = str(uuid.uuid4())
        self.outbox = Outbox(self.policy.max_queued_frames, self.policy.max_buffered_bytes)
        self.granted: frozenset[str] = frozenset()
        self.closed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._close_written = False
        # Behind a trusted proxy, the forwarded client (the rate limit's key).
        self._client_host = scope_client(websocket.scope)
        host = websocket.scope.get("server")
        self._server_host: str | None = host[0] if host else None

    @property
    def nursery(self) -> trio.Nursery:
        """The connection's nursery (where its runs live unless they are detached)."""
        if self._nursery is None:
            raise RuntimeError("the connection is not serving")
        return self._nursery

    async def respond(self, request_id: str, payload: Any) -> None:
        await self.outbox.send_response(ok_response(request_id, payload))

    def close(self, code: int, reason: str) -> None:
        """Close after the frames already queued (the writer then ends the connection)."""
        self.outbox.close_with(code, reason)

    def request_shutdown(self) -> None:
        """The server is stopping: say so (``shutdown`` event) and close with 1012."""
        self.outbox.post_event("shutdown", _SHUTDOWN_PAYLOAD, essential=True)
        self.close(CLOSE_SERVICE_RESTART, "service restart")

    async def serve(self) -> None:
        """Serve the connection until it is closed, by either side.

        On cancellation (the client went away, or the server stopped without ``shutdown``)
        the connection's runs are cancelled with it, and, in case the socket is still open,
        the client gets a ``shutdown`` event and close 1012 (shielded, bounded).
        """
        await self.websocket.accept()
        handshake = Handshake(str(uuid.uuid4()), self.server.authenticator.mode)
        self.outbox.post_unsequenced(handshake.challenge(now_ms()))
        ended_by: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write, nursery.cancel_scope)
                if self.server.stopping:
                    self.request_shutdown()
                elif await self._handshake(handshake):
                    self.server.hub.attach(self)
                    nursery.start_soon(self._tick)
                    await self._read(nursery)
        except BaseException as error:
            ended_by = error
            raise
        finally:
            self.server.hub.detach(self)
            self.outbox.shut()
            self.closed.set()
            if not self._close_written and only_cancelled(ended_by):
                await self._goodbye()

    async def _handshake(self, handshake: Handshake) -> bool:
        """Wait for ``connect`` (``policy.handshake_timeout``) and answer it; ``True`` when
        the client is in, else the connection is closing."""
        outcome: Accepted | Rejected | None = None
        with trio.move_on_after(self.policy.handshake_timeout):
            # Quart hands an empty binary message over as None.
            data = await self.websocket.receive() or b""
            if too_large(data, self.policy.max_preauth_payload):
                outcome = handshake.too_large()
            else:
                outcome = handshake.receive(data, self._authenticate)
        if outcome is None:
            outcome = handshake.timed_out()
        if isinstance(outcome, Accepted):
            self.granted = outcome.granted
            hello = hello_ok(outcome, await self._server_info(), handshake.auth_mode)
            await self.outbox.send_response(hello)
            return True
        if outcome.response is not None:
            await self.outbox.send_response(outcome.response)
        self.close(outcome.code, outcome.reason)
        return False

    def _authenticate(self, presented: str | None) -> AuthResult:
        authenticator = self.server.authenticator
        if authenticator.mode == "none" and not is_loopback(self._server_host):
            # Same rule as HTTP: no-auth is for loopback listeners only.
            return AuthResult("invalid")
        return authenticator.check(presented, self._client_host)

    async def _server_info(self) -> ServerInfo:
        handlers = self.server.handlers
        default = handlers.agents.default_id
        snapshot = {
            "presence": [],
            "health": await handlers.health_snapshot(),
            "stateVersion": {"presence": 0, "health": 0},
            "uptimeMs": handlers.uptime_ms(),
            "sessionDefaults": {
                "defaultAgentId": default,
                "mainKey": "main",
                "mainSessionKey": f"agent:{default}:main",
                "scope": "per-sender",
            },
        }
        return ServerInfo(
            self.server.version, self.conn_id, list(METHODS), EVENTS, snapshot, self.policy
        )

    async def _read(self, nursery: trio.Nursery) -> None:
        """Read requests until the client closes, a frame is too large (close 1009) or the
        connection is closing (the writer then discards what the client still sends)."""
        slots = trio.Semaphore(self.policy.max_requests_in_flight)
        while True:
            # Quart hands an empty binary message over as None.
            data = await self.websocket.receive() or b""
            if not self.outbox.accepting:
                return
            if too_large(data, self.policy.max_payload):
                self.close(CLOSE_MESSAGE_TOO_BIG, "message too big")
                return
            try:
                request = parse_request(data)
            except FrameError as error:
                if error.request_id is not None:
                    try:
                        await self.outbox.send_response(error_response(error.request_id, error))
                    except trio.ClosedResourceError:
                        return
                else:
                    logger.debug("connection %s: ignored a frame: %s", self.conn_id, error)
                continue
            await slots.acquire()
            nursery.start_soon(self._answer, request, slots)

    async def _answer(self, request: Request, slots: trio.Semaphore) -> None:
        """Run one request and send its response (nothing if the connection is closing)."""
        try:
            try:
                if request.method == "connect":
                    raise WsError(INVALID_REQUEST, "invalid request: already connected")
                authorize(request.method, self.granted)
                result = await self.server.handlers.call(self, request)
                if result is not ANSWERED:
                    await self.respond(request.id, result)
            except WsError as error:
                await self.outbox.send_response(error_response(request.id, error))
            except Exception:
                logger.exception("connection %s: %s failed", self.conn_id, request.method)
                internal = WsError(UNAVAILABLE, "internal error")
                await self.outbox.send_response(error_response(request.id, internal))
        except trio.ClosedResourceError:
            pass  # the connection is closing: nobody to answer
        finally:
            slots.release()

    async def _write(self, scope: trio.CancelScope) -> None:
        """Write queued frames in order; after a close frame (once the client has answered it,
        see ``_finish_closing``), or when a write fails, end the connection (cancelling
        ``scope``, the connection's)."""
        while True:
            try:
                item = await self.outbox.get()
            except trio.EndOfChannel:
                return
            try:
                if isinstance(item, CloseFrame):
                    self._close_written = True
                    await self.websocket.close(item.code, item.reason)
                    await self._finish_closing()
                    scope.cancel()
                    return
                await self.websocket.send(item)
            except Exception:
                # Quart 0.23 raises once the client is gone (0.22 and Hypercorn stay silent):
                # the socket is unusable either way, so the connection is over.
                logger.debug("connection %s: write failed", self.conn_id, exc_info=True)
                scope.cancel()
                return

    async def _finish_closing(self) -> None:
        """The closing handshake (RFC 6455 7.1.1): after our close frame, discard what the
        client still sends until its close frame arrives, or ``policy.close_timeout`` passes.

        Why: ending the connection drops the TCP connection at once, and a client may then
        lose frames it has received but not yet handled: the OpenClaw CLI inflates compressed
        messages asynchronously and, when the socket closes first, reports only the close
        (e.g. the ``AUTH_TOKEN_MISMATCH`` answer to ``connect`` was lost). A client sends its
        close once it has read ours, so it has read everything before it too. The client's
        close reaches the app as a disconnect, which cancels this connection (quart-trio
        cancels the handler): that cancellation is how this returns early.
        """
        with trio.move_on_after(self.policy.close_timeout):
            while True:
                await self.websocket.receive()

    async def _tick(self) -> None:
        while True:
            await trio.sleep(self.policy.tick_interval)
            self.outbox.post_event("tick", {"ts": now_ms()})

    async def _goodbye(self) -> None:
        """Best effort after an outside cancellation: Hypercorn ignores writes to a socket the
        client already closed, so this only reaches clients of a server that is stopping."""
        with trio.CancelScope(shield=True), trio.move_on_after(_GOODBYE_SECONDS):
            text = self.outbox.encode_event("shutdown", _SHUTDOWN_PAYLOAD)
            # Quart 0.23 raises once the client is gone; there is nobody left to tell then.
            with contextlib.suppress(Exception):
                await self.websocket.send(text)
                await self.websocket.close(CLOSE_SERVICE_RESTART, "service restart")


def only_cancelled(error: BaseException | None) -> bool:
    """Whether ``error`` is a cancellation (possibly grouped), not a failure."""
    if isinstance(error, trio.Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        _, rest = error.split(trio.Cancelled)
        return rest is None
    return False
