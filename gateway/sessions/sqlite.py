"""The durable transcript store: ``sessions.sqlite3`` under ``<state dir>/gateway/``, WAL,
``synchronous=FULL``: a turn acknowledged by ``append_turn`` survives SIGKILL and power loss.

Every process (Hypercorn worker) opens its own store on the same directory; SQLite serialises
their writes. The file is created on first use; ``aclose`` closes it.

What the transcript keeps and what ``context`` sends the model (shared with the PostgreSQL
store, ``gateway.sessions._transcript_rows``):
- every turn is stored with its status; ``history`` shows everything;
- ``context`` leaves out ``error`` turns entirely (the client got an error and will retry; the
  retry carries the same new messages), keeps ``aborted`` turns (the user saw that partial
  reply) minus their assistant ``tool_calls`` (cut off, never answered) and minus an assistant
  reply left empty;
- ``reset`` deletes the messages and keeps the session row (agent, creation time), so the
  session still lists with 0 messages; it invalidates earlier history cursors.
Neither ``reset`` nor ``delete`` waits for the session lane: take admission's ``admit(key)``
around them to order them with runs.

Followers (``wait_appended``) are woken at once by this object's own writes, and by other
processes' within ``POLL_SECONDS``: while anyone waits, one query every ``POLL_SECONDS`` reads
a fingerprint of every followed session (``gateway.sessions._follow``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio

from gateway.sessions import _transcript_rows, _transcripts
from gateway.sessions._db import Database
from gateway.sessions._follow import AppendWatch
from gateway.sessions.base import (
    HistoryPage,
    RecentMessages,
    SessionInfo,
    TranscriptEntry,
    TranscriptMark,
    TurnStatus,
)
from gateway.types import ChatMessage, UsageDict

__all__ = ["SQLiteTranscripts"]

# How often followers look for other processes' writes (one query per process for all of them).
POLL_SECONDS = 0.25


class SQLiteTranscripts:
    """The ``TranscriptStore`` of every process sharing ``directory``. Constructing it does no
    I/O; the file is created on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._transcripts = Database(directory / "sessions.sqlite3", synchronous="FULL")
        self._opened = False
        self._open_lock = trio.Lock()
        self._closed = False
        self.follow = AppendWatch(self._fingerprints, POLL_SECONDS)

    @property
    def location(self) -> str:
        """The transcripts file."""
        return str(self._transcripts.path)

    async def open(self) -> None:
        """Create the directory and the file if needed. Idempotent; the other methods call it.
        Safe to run in several processes at once."""
        if self._opened:
            return
        async with self._open_lock:
            if self._closed:
                raise RuntimeError("the transcript store is closed")
            if self._opened:
                return
            try:
                await self._transcripts.open(
                    _transcripts.VERSION, _transcripts.SCHEMA, _transcripts.MIGRATIONS
                )
            except BaseException:
                # Stop what did start; the next call starts over with a fresh handle.
                with trio.CancelScope(shield=True):
                    await self._transcripts.aclose()
                self._transcripts = Database(self._transcripts.path, synchronous="FULL")
                raise
            self._opened = True

    async def aclose(self) -> None:
        """Close the file (after the last write); idempotent, shielded."""
        with trio.CancelScope(shield=True):
            async with self._open_lock:
                self._closed = True
            await self._transcripts.aclose()

    async def ping(self) -> bool:
        """Whether the database answers a query (readiness probes)."""
        try:
            await self.open()
            await self._transcripts.read(_select_one)
        except (sqlite3.Error, OSError, RuntimeError):
            return False
        return True

    # Transcripts

    async def append_turn(
        self,
        key: str,
        agent_id: str,
        run_id: str,
        messages: Sequence[ChatMessage],
        status: TurnStatus,
        usage: UsageDict | None = None,
        channel: str | None = None,
    ) -> None:
        """Durably append one turn in one transaction (creating the session on first use);
        returns once it is committed and fsynced, its followers woken. Cancellation is only
        honoured before the write is queued; after that the call waits for the commit. A
        cancelled run recording its turn must shield the call. An empty ``messages`` writes
        nothing."""
        _transcript_rows.check_turn(status)
        if not messages:
            return
        await self.open()
        append = partial(
            _transcripts.append, key, agent_id, run_id, messages, status, usage, channel
        )
        await self._transcripts.write(append, then=lambda _: self.follow.ring(key))

    async def wait_appended(
        self, key: str, after: TranscriptMark, limit: int
    ) -> list[TranscriptEntry] | None:
        """The messages after ``after`` as soon as there are any; ``None`` once the session is
        deleted or was reset since ``after``. See ``TranscriptStore.wait_appended`` and the
        module docstring. Cancellable at any point."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        await self.open()
        read = partial(self._transcripts.read, partial(_transcripts.appended, key, after, limit))
        return await self.follow.wait_for(key, read)

    async def _fingerprints(self, keys: Sequence[str]) -> dict[str, object]:
        return await self._transcripts.read(partial(_transcripts.fingerprints, keys))

    async def context(self, key: str, limit: int | None) -> list[ChatMessage]:
        """The stored conversation for the model, oldest first: at most the newest ``limit``
        messages (all when ``None``), never starting with tool results whose assistant
        ``tool_calls`` message was cut off. See the module docstring for which turns count.
        An unknown key gives ``[]``."""
        _transcript_rows.check_context_limit(limit)
        await self.open()
        return await self._transcripts.read(partial(_transcripts.context, key, limit))

    async def history(self, key: str, limit: int, cursor: str | None) -> HistoryPage | None:
        """Up to ``limit`` messages oldest first, after ``cursor`` (from a previous page's
        ``next_cursor``; ``None`` for the first page). ``None`` if the session does not exist.
        ``ValueError`` for a ``limit`` below 1 or a cursor this store did not make."""
        _transcript_rows.check_history(limit, cursor)
        await self.open()
        return await self._transcripts.read(partial(_transcripts.history, key, limit, cursor))

    async def recent(self, key: str, limit: int) -> RecentMessages | None:
        await self.open()
        return await self._transcripts.read(partial(_transcripts.recent, key, limit))

    async def list_sessions(self, agent_id: str | None, limit: int) -> list[SessionInfo]:
        """Sessions (of ``agent_id``, or all), most recently updated first, with their counts."""
        await self.open()
        read = partial(_transcripts.list_sessions, agent_id, max(limit, 0))
        return await self._transcripts.read(read)

    async def count_sessions(self, agent_id: str | None) -> int:
        """How many sessions there are (of ``agent_id``, or all)."""
        await self.open()
        return await self._transcripts.read(partial(_transcripts.count_sessions, agent_id))

    async def reset(self, key: str) -> bool:
        """Delete the transcript and keep the session; returns whether the session exists."""
        await self.open()
        reset = partial(_transcripts.reset, key)
        return await self._transcripts.write(reset, then=lambda _: self.follow.ring(key))

    async def delete(self, key: str) -> bool:
        """Delete the session and its transcript; returns whether it existed."""
        await self.open()
        delete = partial(_transcripts.delete, key)
        return await self._transcripts.write(delete, then=lambda _: self.follow.ring(key))


def _select_one(connection: sqlite3.Connection) -> object:
    return connection.execute("SELECT 1").fetchone()
