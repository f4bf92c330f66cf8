"""The store implementations the contract tests run against: SQLite on the test's temporary
directory and PostgreSQL on a fresh database of the session's cluster (``tests.postgres``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.sessions.base import TranscriptStore
from gateway.sessions.postgres.connection import PgDatabase
from gateway.sessions.postgres.responses import PgResponses
from gateway.sessions.postgres.transcripts import PgTranscripts
from gateway.sessions.responses import ResponseStore
from gateway.sessions.sqlite import SQLiteTranscripts
from gateway.sessions.sqlite_responses import SQLiteResponses

NAMES = ("sqlite", "postgres")
Store = TypeVar("Store", bound=Any)


@dataclass(frozen=True, slots=True)
class Backend:
    """Where one implementation keeps its data; each ``open_*`` is a new store on the same data,
    as another process (or host) would open it."""

    name: str
    directory: Path
    url: str | None  # PostgreSQL's, for ``postgres``

    def open_transcripts(self) -> AbstractAsyncContextManager[TranscriptStore]:
        return self._open(SQLiteTranscripts, PgTranscripts)

    def open_responses(self) -> AbstractAsyncContextManager[ResponseStore]:
        return self._open(SQLiteResponses, PgResponses)

    @asynccontextmanager
    async def _open(
        self, sqlite: Callable[[Path], Store], postgres: Callable[[PgDatabase], Store]
    ) -> AsyncIterator[Store]:
        """A new store of this backend's kind (closed on the way out, with its database)."""
        if self.url is None:
            store = sqlite(self.directory)
            try:
                yield store
            finally:
                await store.aclose()
            return
        db = PgDatabase(self.url, size=4, name="test")
        store = postgres(db)
        try:
            yield store
        finally:
            await store.aclose()
            await db.aclose()
