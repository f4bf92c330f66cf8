"""The live history of one session, as the body of a streaming response: the snapshot, then
every message appended to the session afterwards, in order, from any process or host (the
transcript store's ``wait_appended`` wakes it), and ``: keepalive`` after each
``heartbeatSeconds`` without one. The framing is ``gateway.http.history_sse``'s.

The body is an async iterator (each item one write) that owns no task: Quart drives it, and
quart-trio cancels it as soon as the client goes away (its receive loop sees the disconnect),
which leaves nothing behind since a cancelled ``wait_appended`` unregisters itself.

The stream ends by itself when the session is deleted or reset (the client reconnects after
``retry`` and gets a fresh snapshot, or 404), when the store fails (logged; the same
reconnection gets the store's 503), and at shutdown (``HistoryStreams.close``), after sending
what had been appended by then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import trio

from gateway.errors import GatewayError
from gateway.http.history_sse import KEEPALIVE, message_events
from gateway.sessions.base import TranscriptEntry, TranscriptMark, TranscriptStore

logger = logging.getLogger("gateway.http")

# At most this many messages are read, and sent in one write, at a time.
BATCH = 100
# At shutdown, how long a stream may wait for the last appends to reach it.
FLUSH_SECONDS = 0.1


class HistoryStreams:
    """The live history streams of one app, so that a shutdown can end them."""

    def __init__(self) -> None:
        self._waits: set[trio.CancelScope] = set()
        self.closing = False

    def close(self) -> None:
        """End every stream (after what was appended so far), and every later one at once."""
        self.closing = True
        for scope in self._waits:
            scope.cancel()

    @property
    def waiting(self) -> int:
        """How many streams wait for appends right now."""
        return len(self._waits)

    @contextmanager
    def wait_scope(self) -> Iterator[trio.CancelScope]:
        """A cancel scope around one wait of a stream, which ``close`` cancels."""
        scope = trio.CancelScope()
        if self.closing:
            scope.cancel()
        self._waits.add(scope)
        try:
            with scope:
                yield scope
        finally:
            self._waits.discard(scope)


class HistoryStream:
    """The writes of one live history stream after ``first`` (``retry`` and the snapshot),
    following the session ``key`` of ``store`` from ``after`` (where the snapshot ended)."""

    def __init__(
        self,
        store: TranscriptStore,
        key: str,
        first: bytes,
        after: TranscriptMark,
        heartbeat: Callable[[], float],
        streams: HistoryStreams,
    ) -> None:
        self._store = store
        self._key = key
        self._first: bytes | None = first
        self._after = after
        self._heartbeat = heartbeat
        self._streams = streams
        self._ended = False

    def __aiter__(self) -> HistoryStream:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._ended:
            raise StopAsyncIteration
        entries: Sequence[TranscriptEntry] | None = None
        try:
            with self._streams.wait_scope() as closing:
                with trio.move_on_after(self._heartbeat()) as quiet:
                    entries = await self._store.wait_appended(self._key, self._after, BATCH)
            if closing.cancelled_caught:
                self._ended = True
                with trio.move_on_after(FLUSH_SECONDS):
                    entries = await self._store.wait_appended(self._key, self._after, BATCH)
            elif quiet.cancelled_caught:
                return KEEPALIVE
        except GatewayError as error:
            logger.warning("live history of %s ends: %s", self._key, error.message)
            raise StopAsyncIteration from None
        if not entries:  # the session is gone or was reset, or nothing came before shutdown
            raise StopAsyncIteration
        self._after = entries[-1].mark
        return message_events(self._key, entries)
