"""The store implementations the contract tests run against: SQLite on the test's temporary
directory and PostgreSQL on a fresh database of the session's cluster (``tests.postgres``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from gateway.sessions.base import TranscriptStore
from gateway.sessions.postgres.connection import PgDatabase
from gateway.sessions.postgres.responses import PgResponses
from gateway.sessions.postgres.transcripts import PgTranscripts
from gateway.sessions.responses import ResponseStore
from gateway.sessions.sqlite import SQLiteTranscripts
from gateway.sessions.sqlite_responses import SQLiteResponses

NAMES = ("sqlite", "postgres")


@dataclass(frozen=True, slots=True)
class Backend:
    """Where one implementation keeps its data; each ``open_*`` is a new store on the same data,
    as another process (or host) would open it."""

    name: str
    directory: Path
    url: str | None  # PostgreSQL's, for ``postgres``

    @asynccontextmanager
    async def open_transcripts(self) -> AsyncIterator[TranscriptStore]:
        if self.url is None:
            sqlite = SQLiteTranscripts(self.directory)
            try:
                yield sqlite
            finally:
                await sqlite.aclose()
            return
        db = PgDatabase(self.url, size=4, name="test")
        store = PgTranscripts(db)
        try:
            yield store
        finally:
            await store.aclose()
            await db.aclose()

    @asynccontextmanager
    async def open_responses(self) -> AsyncIterator[ResponseStore]:
        if self.url is None:
            sqlite = SQLiteResponses(self.directory)
            try:
                yield sqlite
            finally:
                await sqlite.aclose()
            return
        db = PgDatabase(self.url, size=4, name="test")
        store = PgResponses(db)
        try:
            yield store
        finally:
            await store.aclose()
            await db.aclose()
