"""What the PostgreSQL SQL modules share: the connection type, the database's clock and the
read snapshot. Pure (the functions only send statements on the connection they are given)."""

from __future__ import annotations

from typing import Any

import psycopg

Connection = psycopg.Connection[Any]

# Now in Unix milliseconds by the database's clock: one clock for every host.
NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"


def snapshot(db: Connection) -> None:
    """Make the current transaction read one snapshot (as SQLite's reads do) and nothing else;
    must be its first statement. A read-only REPEATABLE READ transaction never fails to
    serialise."""
    db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")


def select_one(db: Connection) -> object:
    """The smallest query (readiness probes)."""
    return db.execute("SELECT 1").fetchone()
