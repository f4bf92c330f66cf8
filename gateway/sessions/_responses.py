"""The SQLite stored-response tables: blocking SQL, run in a worker thread inside a transaction.
Rows and pages are ``gateway.sessions._response_rows``'s, shared with the PostgreSQL store."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Any

from gateway.sessions import _response_rows as rows
from gateway.sessions.responses import MAX_CHAIN, ItemsPage, Order, StoredResponse

VERSION = 1
# Items inserted by one statement: 5 parameters each, within SQLite's oldest limit (999).
_ROWS_PER_INSERT = 199
SCHEMA = (
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        agent_id TEXT NOT NULL,
        session_key TEXT,
        previous_id TEXT,
        body TEXT NOT NULL
    )
    """,
    "CREATE INDEX responses_by_expiry ON responses (expires_at)",
    """
    CREATE TABLE response_items (
        response_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('input', 'output')),
        position INTEGER NOT NULL,
        item_id TEXT,
        body TEXT NOT NULL,
        PRIMARY KEY (response_id, kind, position)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX response_items_by_id ON response_items (item_id)",
)


def put(stored: StoredResponse, expires_at: int, db: sqlite3.Connection) -> None:
    # A response is new but for a retried store: its old rows go only then (two statements
    # fewer on every store).
    try:
        _insert_response(stored, expires_at, db)
    except sqlite3.IntegrityError:
        delete(stored.id, db)
        _insert_response(stored, expires_at, db)
    items = rows.item_rows(stored)
    # One statement per ``_ROWS_PER_INSERT`` items (``executemany`` steps once per row).
    for start in range(0, len(items), _ROWS_PER_INSERT):
        chunk = items[start : start + _ROWS_PER_INSERT]
        db.execute(
            "INSERT INTO response_items (response_id, kind, position, item_id, body) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)),
            [value for item in chunk for value in item],
        )


def _insert_response(stored: StoredResponse, expires_at: int, db: sqlite3.Connection) -> None:
    db.execute(
        "INSERT INTO responses (id, created_at, expires_at, agent_id, session_key, previous_id,"
        " body) VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows.response_row(stored, expires_at),
    )


def get(response_id: str, db: sqlite3.Connection) -> StoredResponse | None:
    row = db.execute(
        f"SELECT {rows.RESPONSE_COLUMNS} FROM responses WHERE id = ?",
        (response_id,),
    ).fetchone()
    return None if row is None else rows.stored(row, _inputs(db, response_id))


def chain(response_id: str, db: sqlite3.Connection) -> list[StoredResponse] | None:
    found = db.execute(
        """
        WITH RECURSIVE ancestry(id, depth) AS (
            SELECT id, 0 FROM responses WHERE id = ?
            UNION ALL
            SELECT r.previous_id, a.depth + 1 FROM ancestry AS a
            JOIN responses AS r ON r.id = a.id
            WHERE r.previous_id IS NOT NULL AND a.depth < ?
        )
        SELECT r.id, r.created_at, r.agent_id, r.session_key, r.previous_id, r.body
        FROM ancestry AS a JOIN responses AS r ON r.id = a.id
        ORDER BY a.depth DESC
        """,
        (response_id, MAX_CHAIN),
    ).fetchall()
    if not found or found[-1][0] != response_id:
        return None
    return [rows.stored(row, _inputs(db, row[0])) for row in found]


def find_items(item_ids: Collection[str], db: sqlite3.Connection) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item_id in item_ids:
        row = db.execute(
            "SELECT i.body FROM response_items AS i JOIN responses AS r ON r.id = i.response_id"
            " WHERE i.item_id = ? ORDER BY r.created_at DESC, i.kind DESC LIMIT 1",
            (item_id,),
        ).fetchone()
        if row is not None:
            found[item_id] = rows.loads(row[0])
    return found


def input_items(
    response_id: str, limit: int, after: str | None, order: Order, db: sqlite3.Connection
) -> ItemsPage | None:
    if db.execute("SELECT 1 FROM responses WHERE id = ?", (response_id,)).fetchone() is None:
        return None
    return rows.items_page(_inputs(db, response_id), limit, after, order)


def delete(response_id: str, db: sqlite3.Connection) -> bool:
    db.execute("DELETE FROM response_items WHERE response_id = ?", (response_id,))
    return db.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0


def prune(now: int, db: sqlite3.Connection) -> int:
    expired = [
        row[0] for row in db.execute("SELECT id FROM responses WHERE expires_at <= ?", (now,))
    ]
    for response_id in expired:
        delete(response_id, db)
    return len(expired)


def _inputs(db: sqlite3.Connection, response_id: str) -> list[Any]:
    found = db.execute(
        "SELECT body FROM response_items WHERE response_id = ? AND kind = 'input'"
        " ORDER BY position",
        (response_id,),
    )
    return [rows.loads(body) for (body,) in found]
