"""Hypercorn's WebSocket stream, made to fail a connection with a close frame (RFC 6455).

Why: a client frame that breaks the WebSocket framing (invalid UTF-8 in a text message, RSV
bits without a negotiated extension, an unmasked client frame, an unknown opcode, a fragmented
control frame or one over 125 bytes, a malformed close frame) must *fail the connection*: send a
close frame, 1007 for invalid UTF-8 and 1002 for the other protocol errors, then close TCP
(RFC 6455 7.1.7, 7.4.1). wsproto detects the error and yields ``CloseConnection(code, reason)``
for it while its connection state is still ``OPEN`` (a close frame received from the peer moves
the state to ``REMOTE_CLOSING`` or ``CLOSED`` before it is yielded). Hypercorn's
``WSStream._handle_events`` writes a close only in ``REMOTE_CLOSING`` (to echo the peer's
close), so on a protocol error it closes the stream, and with it the TCP connection, without a
close frame: the client sees 1006.

What changes: ``ClosingWSStream._handle_events`` lets Hypercorn's own loop run, but through a
view of the wsproto connection whose ``events()`` stops before such a failure and keeps it;
then it writes the close frame with wsproto's code and reason (wsproto truncates the reason to
fit a control frame) and closes the stream as Hypercorn does (``StreamClosed``). Everything else
is Hypercorn's code, unchanged: messages, pings, the peer's close, and the 1009 close for a
message over ``websocket_max_message_size`` (Hypercorn already writes that frame, then waits for
the client's close).

``install()`` makes Hypercorn's HTTP/1.1 and HTTP/2 protocols (``hypercorn.protocol.h11`` and
``.h2``, which construct streams by the name ``WSStream`` they imported) build this subclass. It
is idempotent and is called by ``create_app``, so it holds under ``gateway serve``, ``hypercorn
-k trio gateway.app:app`` (in each worker) and in tests. HTTP/3 (``hypercorn.protocol.h3``,
QUIC) is left alone. When Hypercorn's internals are not what the subclass relies on, it logs a
warning and changes nothing.

Checked against Hypercorn 0.17.3 and 0.18.0 with wsproto 1.2.0 and 1.3.2.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import cast

from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.ws_stream import WSStream
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection, Event

logger = logging.getLogger("gateway.ws")

# The modules that construct ``WSStream`` by a name they imported from ``ws_stream``.
CONSTRUCTED_IN = ("hypercorn.protocol.h11", "hypercorn.protocol.h2")

# What ``ClosingWSStream`` relies on: per method of ``WSStream``, the attribute names it must
# use (its loop reads ``self.connection.events()``, ``__init__`` sets ``send`` and ``stream_id``).
RELIED_ON = (
    ("__init__", ("send", "stream_id")),
    ("_handle_events", ("connection", "events")),
    ("_send_wsproto_event", ("connection",)),
)


def failure_close(event: Event, state: ConnectionState) -> CloseConnection | None:
    """The close frame to send for ``event``, which wsproto's ``events()`` yielded while its
    connection was in ``state``: the same code and reason when it reports a protocol error
    (a ``CloseConnection`` while still ``OPEN``), else ``None``."""
    if isinstance(event, CloseConnection) and state is ConnectionState.OPEN:
        return CloseConnection(code=event.code, reason=event.reason)
    return None


class FailureWatch:
    """The wsproto connection as Hypercorn's event loop sees it during one ``_handle_events``:
    the same connection, except that ``events()`` ends before a protocol error and keeps the
    close it calls for in ``close``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.close: CloseConnection | None = None

    @property
    def state(self) -> ConnectionState:
        return self.connection.state

    def send(self, event: Event) -> bytes:
        return self.connection.send(event)

    def receive_data(self, data: bytes | None) -> None:
        self.connection.receive_data(data)

    def events(self) -> Iterator[Event]:
        for event in self.connection.events():
            close = failure_close(event, self.connection.state)
            if close is not None:
                # wsproto yields nothing after a protocol error: this ends the iteration.
                self.close = close
                return
            yield event


# Works around a Hypercorn bug, a WebSocket protocol error closing the stream without a close
# frame, that has no issue on pgjones/hypercorn: no upstream issue found as of 2026-12 (#127,
# about the close code Hypercorn reports to the app after the peer's close, is another one).
class ClosingWSStream(WSStream):
    """Hypercorn's ``WSStream`` that answers a protocol error with a close frame before
    closing the stream (see the module docstring)."""

    async def _handle_events(self) -> None:
        """Hypercorn's handling of the events received so far; on a protocol error, the close
        frame with wsproto's code, then the stream closed.

        Hypercorn calls this from the connection's one reading task, never concurrently. If
        cancelled, the real connection is put back and nothing more is written."""
        connection = self.connection
        watch = FailureWatch(connection)
        # Hypercorn's loop reads ``self.connection``: it gets the view for this call only.
        # The view offers every member of the connection that Hypercorn uses.
        self.connection = cast(Connection, watch)
        try:
            await super()._handle_events()
        finally:
            self.connection = connection
        if watch.close is not None:
            await self._send_wsproto_event(watch.close)
            await self.send(StreamClosed(stream_id=self.stream_id))


def install() -> bool:
    """Make Hypercorn build ``ClosingWSStream`` for every WebSocket upgrade from now on
    (streams already open keep their class). Idempotent.

    Returns whether it is installed. When Hypercorn's internals differ from what the subclass
    relies on (a module, method or attribute missing, or ``WSStream`` already replaced by
    someone else), logs a warning, changes nothing and returns ``False``."""
    problem, modules = _hypercorn_as_expected()
    if problem is not None:
        logger.warning(
            "Hypercorn's WebSocket stream is not as expected (%s): a WebSocket protocol error "
            "will close the connection without a close frame",
            problem,
        )
        return False
    for module in modules:
        module.WSStream = ClosingWSStream  # type: ignore[attr-defined]
    return True


def _hypercorn_as_expected() -> tuple[str | None, list[ModuleType]]:
    """``(None, modules to patch)``, or a description of the first difference found."""
    for method, names in RELIED_ON:
        code = getattr(getattr(WSStream, method, None), "__code__", None)
        if code is None:
            return f"WSStream.{method} missing", []
        missing = [name for name in names if name not in code.co_names]
        if missing:
            return f"WSStream.{method} no longer uses {', '.join(missing)}", []
    modules = []
    for name in CONSTRUCTED_IN:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            return f"{name}: {error}", []
        if getattr(module, "WSStream", None) not in (WSStream, ClosingWSStream):
            return f"{name}.WSStream is not hypercorn.protocol.ws_stream.WSStream", []
        modules.append(module)
    return None, modules
