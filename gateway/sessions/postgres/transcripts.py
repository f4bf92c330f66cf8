"""The transcript store in PostgreSQL, shared by every gateway host on the database. It keeps the
SQLite store's promises (``gateway.sessions.sqlite``: what ``context`` leaves out, cursors,
``reset`` keeping the session), and its ordering across hosts is described in
``gateway.sessions.postgres._transcripts_sql``.

A turn acknowledged by ``append_turn`` is committed (durable as the server's settings make
it). When the database does not answer, calls raise ``StoreUnavailable`` (503).

Followers (``wait_appended``) are woken at once by this object's own writes, by other hosts'
through their notifications (the host's listener hands them to ``notified``; a reconnected
listener, which may have missed some, to ``ring_all``), and, as a safety net, by a probe of
the followed sessions every ``POLL_SECONDS`` while anyone waits (``gateway.sessions._follow``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import psycopg

from gateway.sessions import _transcript_rows
from gateway.sessions._follow import AppendWatch
from gateway.sessions.base import (
    HistoryPage,
    RecentMessages,
    SessionInfo,
    TranscriptEntry,
    TranscriptMark,
    TurnStatus,
)
from gateway.sessions.postgres import _transcripts_sql as sql
from gateway.sessions.postgres._sql import select_one
from gateway.sessions.postgres.connection import PgDatabase, StoreUnavailable
from gateway.sessions.postgres.schema import SchemaGate, SchemaTooNew
from gateway.sessions.postgres.url import display
from gateway.types import ChatMessage, UsageDict

__all__ = ["PgTranscripts"]

# The safety net under notifications: how often followers look at the database themselves.
POLL_SECONDS = 1.0


class PgTranscripts:
    """The ``TranscriptStore`` on ``db``. Constructing it does no I/O; the schema is brought
    up to date on first use. ``db`` stays its owner's: ``aclose`` does not close it."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._schema = SchemaGate(db)
        self.follow = AppendWatch(self._fingerprints, POLL_SECONDS)

    @property
    def location(self) -> str:
        """The database URL, without its password."""
        return display(self._db.url)

    async def ping(self) -> bool:
        """Whether the database answers a query (readiness probes); never raises."""
        try:
            await self._schema.ensure()
            await self._db.run(select_one)
        except (StoreUnavailable, SchemaTooNew, psycopg.Error):
            return False
        return True

    async def aclose(self) -> None:
        """Nothing to release: the connections are the database owner's."""

    def notified(self, payload: str) -> None:
        """A ``gateway_appended`` notification (on the trio thread): the payload's session was
        written by some host; an empty payload stands for any session."""
        if payload:
            self.follow.ring(payload)
        else:
            self.follow.ring_all()

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
        """Append one turn in one transaction (creating the session on first use); returns
        once it is committed, its followers woken (on every host). Cancellation is honoured
        only while the write waits for a connection; once it has started, the call waits for
        the commit. A cancelled run recording its turn must shield the call. An empty
        ``messages`` writes nothing."""
        _transcript_rows.check_turn(status)
        if not messages:
            return
        await self._schema.ensure()
        await self._db.run(
            partial(sql.append, key, agent_id, run_id, messages, status, usage, channel)
        )
        self.follow.ring(key)

    async def wait_appended(
        self, key: str, after: TranscriptMark, limit: int
    ) -> list[TranscriptEntry] | None:
        """The messages after ``after`` as soon as there are any; ``None`` once the session is
        deleted or was reset since ``after``. See ``TranscriptStore.wait_appended`` and the
        module docstring. Cancellable at any point;
        ``StoreUnavailable`` when the database does not answer."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        await self._schema.ensure()
        read = partial(self._db.run, partial(sql.appended, key, after, limit))
        return await self.follow.wait_for(key, read)

    async def _fingerprints(self, keys: Sequence[str]) -> dict[str, object]:
        return await self._db.run(partial(sql.fingerprints, keys))

    async def context(self, key: str, limit: int | None) -> list[ChatMessage]:
        """The stored conversation for the model, oldest first: at most the newest ``limit``
        messages (all when ``None``), as ``gateway.sessions._transcript_rows`` describes. An
        unknown key gives ``[]``."""
        _transcript_rows.check_context_limit(limit)
        await self._schema.ensure()
        return await self._db.run(partial(sql.context, key, limit))

    async def history(self, key: str, limit: int, cursor: str | None) -> HistoryPage | None:
        """Up to ``limit`` messages oldest first, after ``cursor`` (from a previous page's
        ``next_cursor``; ``None`` for the first page). ``None`` if the session does not exist.
        ``ValueError`` for a ``limit`` below 1 or a cursor this store did not make."""
        _transcript_rows.check_history(limit, cursor)
        await self._schema.ensure()
        return await self._db.run(partial(sql.history, key, limit, cursor))

    async def recent(self, key: str, limit: int) -> RecentMessages | None:
        await self._schema.ensure()
        return await self._db.run(partial(sql.recent, key, limit))

    async def list_sessions(self, agent_id: str | None, limit: int) -> list[SessionInfo]:
        """Sessions (of ``agent_id``, or all), most recently updated first, with their counts."""
        await self._schema.ensure()
        return await self._db.run(partial(sql.list_sessions, agent_id, max(limit, 0)))

    async def count_sessions(self, agent_id: str | None) -> int:
        """How many sessions there are (of ``agent_id``, or all)."""
        await self._schema.ensure()
        return await self._db.run(partial(sql.count_sessions, agent_id))

    async def reset(self, key: str) -> bool:
        """Delete the transcript and keep the session; returns whether the session exists."""
        await self._schema.ensure()
        found = await self._db.run(partial(sql.reset, key))
        self.follow.ring(key)
        return found

    async def delete(self, key: str) -> bool:
        """Delete the session and its transcript; returns whether it existed."""
        await self._schema.ensure()
        found = await self._db.run(partial(sql.delete, key))
        self.follow.ring(key)
        return found
