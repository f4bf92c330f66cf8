"""The stored-response tables in PostgreSQL: blocking SQL, run by ``PgDatabase`` inside a
transaction (READ COMMITTED). Rows and pages are ``gateway.sessions._response_rows``'s, shared
with the SQLite store.

``put`` replaces a response by upserting its row first: the row stays locked until commit, so
two hosts storing one id one after the other leave the second's items, never a mix. Items go
with their response (``ON DELETE CASCADE``). Reads of more than one statement run in a READ
ONLY REPEATABLE READ snapshot.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gateway.sessions import _response_rows as rows
from gateway.sessions.postgres._sql import Connection, snapshot
from gateway.sessions.responses import MAX_CHAIN, ItemsPage, Order, StoredResponse

_EXISTS = "SELECT 1 FROM gateway_responses WHERE id = %s"


def put(stored: StoredResponse, expires_at: int, db: Connection) -> None:
    db.execute(
        "INSERT INTO gateway_responses (id, created_at, expires_at, agent_id, session_key,"
        " previous_id, body) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at,"
        " expires_at = excluded.expires_at, agent_id = excluded.agent_id,"
        " session_key = excluded.session_key, previous_id = excluded.previous_id,"
        " body = excluded.body",
        rows.response_row(stored, expires_at),
    )
    db.execute("DELETE FROM gateway_response_items WHERE response_id = %s", (stored.id,))
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO gateway_response_items (response_id, kind, position, item_id, body)"
            " VALUES (%s, %s, %s, %s, %s)",
            rows.item_rows(stored),
        )


def get(response_id: str, db: Connection) -> StoredResponse | None:
    snapshot(db)
    row = db.execute(
        f"SELECT {rows.RESPONSE_COLUMNS} FROM gateway_responses WHERE id = %s", (response_id,)
    ).fetchone()
    return None if row is None else rows.stored(row, _inputs(db, [response_id])[response_id])


def chain(response_id: str, db: Connection) -> list[StoredResponse] | None:
    snapshot(db)
    found = db.execute(
        """
        WITH RECURSIVE ancestry(id, depth) AS (
            SELECT id, 0 FROM gateway_responses WHERE id = %s
            UNION ALL
            SELECT r.previous_id, a.depth + 1 FROM ancestry AS a
            JOIN gateway_responses AS r ON r.id = a.id
            WHERE r.previous_id IS NOT NULL AND a.depth < %s
        )
        SELECT r.id, r.created_at, r.agent_id, r.session_key, r.previous_id, r.body
        FROM ancestry AS a JOIN gateway_responses AS r ON r.id = a.id
        ORDER BY a.depth DESC
        """,
        (response_id, MAX_CHAIN),
    ).fetchall()
    if not found or found[-1][0] != response_id:
        return None
    # One query for every response's inputs: a round trip per response would dominate.
    inputs = _inputs(db, list({row[0] for row in found}))
    return [rows.stored(row, list(inputs[row[0]])) for row in found]


def find_items(item_ids: Collection[str], db: Connection) -> dict[str, Any]:
    # Per id, the newest response's item wins (its output over its input), as in SQLite.
    found = db.execute(
        "SELECT DISTINCT ON (i.item_id) i.item_id, i.body"
        " FROM gateway_response_items AS i JOIN gateway_responses AS r ON r.id = i.response_id"
        " WHERE i.item_id = ANY(%s)"
        " ORDER BY i.item_id, r.created_at DESC, i.kind DESC",
        (list(item_ids),),
    ).fetchall()
    return {item_id: rows.loads(body) for item_id, body in found}


def input_items(
    response_id: str, limit: int, after: str | None, order: Order, db: Connection
) -> ItemsPage | None:
    snapshot(db)
    if db.execute(_EXISTS, (response_id,)).fetchone() is None:
        return None
    return rows.items_page(_inputs(db, [response_id])[response_id], limit, after, order)


def delete(response_id: str, db: Connection) -> bool:
    return db.execute("DELETE FROM gateway_responses WHERE id = %s", (response_id,)).rowcount > 0


def prune(now: int, db: Connection) -> int:
    return db.execute("DELETE FROM gateway_responses WHERE expires_at <= %s", (now,)).rowcount


def _inputs(db: Connection, response_ids: list[str]) -> dict[str, list[Any]]:
    """The decoded input items of each response, in order (``[]`` for one with none)."""
    found: dict[str, list[Any]] = {response_id: [] for response_id in response_ids}
    for response_id, body in db.execute(
        "SELECT response_id, body FROM gateway_response_items"
        " WHERE response_id = ANY(%s) AND kind = 'input' ORDER BY response_id, position",
        (response_ids,),
    ):
        found[response_id].append(rows.loads(body))
    return found
