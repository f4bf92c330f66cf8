"""The PostgreSQL schema and its versions. Every table is prefixed ``gateway_`` (the database
may hold other applications' tables).

``MIGRATIONS`` lists each version with the statements that make it from the one before; never
edit a released version, add the next one. ``migrate`` applies the missing ones in one
transaction while holding a transaction-scoped advisory lock, so several hosts starting at
once against an empty database all come up: one creates the tables, the others wait for its
commit and find them. ``gateway_schema`` records each applied version. A database made by a
newer gateway is refused (``SchemaTooNew``): this code would misread it.

Transcripts and stored responses have the SQLite stores' columns (``gateway.sessions._transcripts``
and ``_responses``): JSON as ``text`` (kept byte for byte, as the client sent it: ``jsonb``
would reorder keys and refuses ``\\u0000``), times as ``bigint`` (milliseconds for transcripts,
seconds for responses). Messages and response items go with their session or response
(``ON DELETE CASCADE``). The admission tables (``gateway_hosts``, ``gateway_tickets``,
``gateway_events``) are ``gateway.sessions.postgres.admission``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from gateway.errors import CannotStart
from gateway.sessions.postgres._sql import NOW_MS, Connection
from gateway.sessions.postgres.connection import PgDatabase
from gateway.sessions.postgres.host import NAMESPACE
from gateway.sessions.postgres.url import display

# The advisory xact lock that serialises migrations; the class is one of the gateway's
# (``host.NAMESPACE`` and the next two are taken by presence and the ticket queues).
_LOCK = (NAMESPACE + 3, 0)

MIGRATIONS: Sequence[tuple[int, Sequence[str]]] = (
    (
        1,
        (
            """
            CREATE TABLE gateway_sessions (
                key TEXT PRIMARY KEY,
                agent_id TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                updated_at_ms BIGINT NOT NULL
            )
            """,
            "CREATE INDEX gateway_sessions_by_update ON gateway_sessions (updated_at_ms)",
            "CREATE INDEX gateway_sessions_by_agent ON gateway_sessions (agent_id, updated_at_ms)",
            """
            CREATE TABLE gateway_messages (
                session_key TEXT NOT NULL REFERENCES gateway_sessions (key) ON DELETE CASCADE,
                seq BIGINT NOT NULL,
                role TEXT NOT NULL,
                content TEXT,
                name TEXT,
                tool_calls TEXT,
                tool_call_id TEXT,
                run_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('complete', 'aborted', 'error')),
                usage TEXT,
                created_at_ms BIGINT NOT NULL,
                PRIMARY KEY (session_key, seq)
            )
            """,
            """
            CREATE TABLE gateway_responses (
                id TEXT PRIMARY KEY,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                agent_id TEXT NOT NULL,
                session_key TEXT,
                previous_id TEXT,
                body TEXT NOT NULL
            )
            """,
            "CREATE INDEX gateway_responses_by_expiry ON gateway_responses (expires_at)",
            """
            CREATE TABLE gateway_response_items (
                response_id TEXT NOT NULL REFERENCES gateway_responses (id) ON DELETE CASCADE,
                kind TEXT NOT NULL CHECK (kind IN ('input', 'output')),
                position INTEGER NOT NULL,
                item_id TEXT,
                body TEXT NOT NULL,
                PRIMARY KEY (response_id, kind, position)
            )
            """,
            "CREATE INDEX gateway_response_items_by_id ON gateway_response_items (item_id)",
            """
            CREATE TABLE gateway_hosts (
                token TEXT PRIMARY KEY,
                lock_key INTEGER NOT NULL UNIQUE,
                hostname TEXT NOT NULL,
                pid INTEGER NOT NULL,
                started_at_ms BIGINT NOT NULL
            )
            """,
            """
            CREATE TABLE gateway_tickets (
                id BIGSERIAL PRIMARY KEY,
                kind TEXT NOT NULL CHECK (kind IN ('session','slot')),
                key TEXT NOT NULL,
                owner TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL
            )
            """,
            "CREATE INDEX gateway_tickets_queue ON gateway_tickets (kind, key, id)",
            "CREATE INDEX gateway_tickets_owner ON gateway_tickets (owner)",
            """
            CREATE TABLE gateway_events (
                id BIGSERIAL PRIMARY KEY,
                payload TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL
            )
            """,
        ),
    ),
    # The message channel of a turn (live history shows it); NULL for turns without one.
    (2, ("ALTER TABLE gateway_messages ADD COLUMN IF NOT EXISTS channel TEXT",)),
    # A kill is kept on the ticket too: a host whose listener was reconnecting when the
    # notification went out finds it when it checks its tickets.
    (
        3,
        (
            "ALTER TABLE gateway_tickets"
            " ADD COLUMN IF NOT EXISTS kill_requested BOOLEAN NOT NULL DEFAULT false",
        ),
    ),
)
LATEST = MIGRATIONS[-1][0]


class SchemaTooNew(CannotStart):
    """The database was made by a newer gateway (its schema version is above ``LATEST``)."""

    def __init__(self, found: int, known: int, where: str) -> None:
        super().__init__(
            f"the database {where} has schema version {found}, newer than this gateway"
            f" understands (up to version {known}): upgrade the gateway"
        )
        self.found = found
        self.known = known


async def migrate(db: PgDatabase) -> int:
    """Bring the database's schema up to ``LATEST`` (see the module docstring); returns the
    version now in effect. ``SchemaTooNew`` for a newer database, ``StoreUnavailable`` when it
    does not answer. Cancellation: like ``PgDatabase.run``, a migration that has started runs
    to its commit or rollback."""
    found = await db.run(_apply)
    if found > LATEST:
        raise SchemaTooNew(found, LATEST, display(db.url))
    return max(found, LATEST)


def _apply(db: Connection) -> int:
    """Apply the missing versions; returns the version found (nothing applied when newer)."""
    db.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LOCK)
    db.execute(
        "CREATE TABLE IF NOT EXISTS gateway_schema"
        " (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)"
    )
    row = db.execute("SELECT coalesce(max(version), 0) FROM gateway_schema").fetchone()
    found = int(row[0]) if row else 0
    for version, statements in MIGRATIONS:
        if version <= found:
            continue
        for statement in statements:
            db.execute(statement)
        db.execute(
            f"INSERT INTO gateway_schema (version, applied_at_ms) VALUES (%s, {NOW_MS})",
            (version,),
        )
    return found


class SchemaGate:
    """Runs ``migrate`` on first need, once per store: a store made on its own (tests, tools)
    works on an empty database as the SQLite stores do on a new file. A failed migration is
    tried again by the next call."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._done = False
        self._lock = trio.Lock()

    async def ensure(self) -> None:
        """Return once the schema is current; raises what ``migrate`` raises."""
        if self._done:
            return
        async with self._lock:
            if not self._done:
                await migrate(self._db)
                self._done = True
