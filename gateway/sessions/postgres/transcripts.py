"""The transcript store in PostgreSQL, shared by every gateway host on the database. It keeps the
SQLite store's promises (``gateway.sessions.sqlite``: what ``context`` leaves out, cursors,
``reset`` keeping the session), and its ordering across hosts is described in
``gateway.sessions.postgres._transcripts_sql``.

A turn acknowledged by ``append_turn`` is committed (durable as the server's settings make
it). When the database does not answer, calls raise ``StoreUnavailable`` (503).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import psycopg

from gateway.sessions import _transcript_rows
from gateway.sessions.base import HistoryPage, RecentMessages, SessionInfo, TurnStatus
from gateway.sessions.postgres import _transcripts_sql as sql
from gateway.sessions.postgres._sql import select_one
from gateway.sessions.postgres.connection import PgDatabase, StoreUnavailable
from gateway.sessions.postgres.schema import SchemaGate, SchemaTooNew
from gateway.sessions.postgres.url import display
from gateway.types import ChatMessage, UsageDict

__all__ = ["PgTranscripts"]


class PgTranscripts:
    """The ``TranscriptStore`` on ``db``. Constructing it does no I/O; the schema is brought
    up to date on first use. ``db`` stays its owner's: ``aclose`` does not close it."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._schema = SchemaGate(db)

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

    async def append_turn(
        self,
        key: str,
        agent_id: str,
        run_id: str,
        messages: Sequence[ChatMessage],
        status: TurnStatus,
        usage: UsageDict | None = None,
    ) -> None:
        """Append one turn in one transaction (creating the session on first use); returns
        once it is committed. Cancellation is honoured only while the write waits for a
        connection; once it has started, the call waits for the commit. A cancelled run
        recording its turn must shield the call. An empty ``messages`` writes nothing."""
        _transcript_rows.check_turn(status)
        if not messages:
            return
        await self._schema.ensure()
        await self._db.run(partial(sql.append, key, agent_id, run_id, messages, status, usage))

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
        return await self._db.run(partial(sql.reset, key))

    async def delete(self, key: str) -> bool:
        """Delete the session and its transcript; returns whether it existed."""
        await self._schema.ensure()
        return await self._db.run(partial(sql.delete, key))
