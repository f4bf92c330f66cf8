"""The transcript tables in PostgreSQL: blocking SQL, run by ``PgDatabase`` inside a transaction
(READ COMMITTED). Rows and what ``context`` keeps are ``gateway.sessions._transcript_rows``'s,
shared with the SQLite store.

Order across hosts: every write to a session first locks its ``gateway_sessions`` row (the
upsert of ``append``, the update of ``reset``, the delete of ``delete``) and only then reads or
changes its messages, in later statements, which see everything committed before the lock was
granted. A reset or delete that finds no row (none committed when its statement began) changes
nothing: it comes before any append creating the session meanwhile. So appends to one session
from any number of hosts number their messages one after the other, without gaps or
duplicates, and a turn never lands beside a reset or a delete.
Times come from the database's clock, one clock for every host; a session's ``updated_at_ms``
never goes back.

Reads of more than one statement run in a READ ONLY REPEATABLE READ snapshot, as SQLite's do.

Every write to a session (append, reset, delete) also notifies ``APPENDED`` with the session's
key (delivered to the listening hosts at commit): their followers of that session read again.
A key too long for a notification's payload sends an empty one, which wakes every follower.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.sessions import _transcript_rows as rows
from gateway.sessions.base import (
    HistoryPage,
    RecentMessages,
    SessionInfo,
    TranscriptEntry,
    TranscriptMark,
    TurnStatus,
)
from gateway.sessions.postgres._sql import NOW_MS, Connection, snapshot
from gateway.types import ChatMessage, UsageDict

APPENDED = "gateway_appended"
# PostgreSQL refuses notification payloads of 8000 bytes or more.
_MAX_PAYLOAD = 7900
_EXISTS = "SELECT 1 FROM gateway_sessions WHERE key = %s"
_LAST = "SELECT seq, run_id FROM gateway_messages WHERE session_key = %s ORDER BY seq DESC LIMIT 1"


def _notify(key: str, db: Connection) -> None:
    payload = key if len(key.encode()) <= _MAX_PAYLOAD else ""
    db.execute("SELECT pg_notify(%s, %s)", (APPENDED, payload))


def append(
    key: str,
    agent_id: str,
    run_id: str,
    messages: Sequence[ChatMessage],
    status: TurnStatus,
    usage: UsageDict | None,
    channel: str | None,
    db: Connection,
) -> None:
    # The upsert locks the session's row until commit: concurrent appends wait here.
    row = db.execute(
        "INSERT INTO gateway_sessions AS s (key, agent_id, created_at_ms, updated_at_ms)"
        f" SELECT %s, %s, now_ms, now_ms FROM (SELECT {NOW_MS} AS now_ms) AS clock"
        " ON CONFLICT (key) DO UPDATE"
        " SET updated_at_ms = greatest(s.updated_at_ms, excluded.updated_at_ms)"
        " RETURNING updated_at_ms",
        (key, agent_id),
    ).fetchone()
    assert row is not None
    (now,) = row
    last = db.execute(
        "SELECT coalesce(max(seq), 0) FROM gateway_messages WHERE session_key = %s", (key,)
    ).fetchone()
    assert last is not None
    with db.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO gateway_messages ({rows.ROW_COLUMNS})"
            f" VALUES ({', '.join(['%s'] * rows.ROW_WIDTH)})",
            rows.turn_rows(key, int(last[0]), run_id, messages, status, usage, int(now), channel),
        )
    _notify(key, db)


def context(key: str, limit: int | None, db: Connection) -> list[ChatMessage]:
    found = db.execute(
        f"SELECT {rows.CONTEXT_COLUMNS} FROM gateway_messages"
        " WHERE session_key = %s AND status != 'error' ORDER BY seq DESC LIMIT %s",
        (key, limit),
    ).fetchall()
    return rows.context_messages(found)


def history(key: str, limit: int, cursor: str | None, db: Connection) -> HistoryPage | None:
    after = rows.decode_cursor(cursor)
    snapshot(db)
    if db.execute(_EXISTS, (key,)).fetchone() is None:
        return None
    found = db.execute(
        f"SELECT {rows.ENTRY_COLUMNS} FROM gateway_messages WHERE session_key = %s AND seq > %s"
        " ORDER BY seq LIMIT %s",
        (key, after, limit + 1),
    ).fetchall()
    return rows.history_page(found, limit, db.execute(_LAST, (key,)).fetchone())


def appended(
    key: str, after: TranscriptMark, limit: int, db: Connection
) -> list[TranscriptEntry] | None:
    snapshot(db)
    exists = db.execute(_EXISTS, (key,)).fetchone() is not None
    found = db.execute(
        f"SELECT {rows.ENTRY_COLUMNS} FROM gateway_messages WHERE session_key = %s AND seq >= %s"
        " ORDER BY seq LIMIT %s",
        (key, after.seq, limit + 1),
    ).fetchall()
    return rows.appended_after(after, limit, exists, found)


def fingerprints(keys: Sequence[str], db: Connection) -> dict[str, object]:
    """Per existing session among ``keys``: its last update time and newest seq, which every
    append, reset and delete changes."""
    found = db.execute(
        "SELECT key, updated_at_ms,"
        " (SELECT coalesce(max(seq), 0) FROM gateway_messages WHERE session_key = s.key)"
        " FROM gateway_sessions AS s WHERE key = ANY(%s)",
        (list(keys),),
    ).fetchall()
    return {key: (int(updated), int(last)) for key, updated, last in found}


def recent(key: str, limit: int, db: Connection) -> RecentMessages | None:
    snapshot(db)
    if db.execute(_EXISTS, (key,)).fetchone() is None:
        return None
    found = db.execute(
        f"SELECT {rows.ENTRY_COLUMNS} FROM gateway_messages WHERE session_key = %s"
        " ORDER BY seq DESC LIMIT %s",
        (key, None if limit < 0 else limit),  # no limit, as SQLite reads a negative one
    ).fetchall()
    total = db.execute(
        "SELECT count(*) FROM gateway_messages WHERE session_key = %s", (key,)
    ).fetchone()
    assert total is not None
    return RecentMessages([rows.entry(*row) for row in reversed(found)], int(total[0]))


def list_sessions(agent_id: str | None, limit: int, db: Connection) -> list[SessionInfo]:
    # COLLATE "C": keys tie-break byte-wise, as in SQLite, whatever the database's locale.
    found = db.execute(
        "SELECT key, agent_id, created_at_ms, updated_at_ms,"
        " (SELECT count(*) FROM gateway_messages WHERE session_key = s.key)"
        " FROM gateway_sessions AS s WHERE %(agent)s::text IS NULL OR agent_id = %(agent)s"
        ' ORDER BY updated_at_ms DESC, key COLLATE "C" LIMIT %(limit)s',
        {"agent": agent_id, "limit": limit},
    ).fetchall()
    return [SessionInfo(key, agent, int(c), int(u), int(n)) for key, agent, c, u, n in found]


def count_sessions(agent_id: str | None, db: Connection) -> int:
    row = db.execute(
        "SELECT count(*) FROM gateway_sessions"
        " WHERE %(agent)s::text IS NULL OR agent_id = %(agent)s",
        {"agent": agent_id},
    ).fetchone()
    assert row is not None
    return int(row[0])


def reset(key: str, db: Connection) -> bool:
    updated = db.execute(
        f"UPDATE gateway_sessions SET updated_at_ms = greatest(updated_at_ms, {NOW_MS})"
        " WHERE key = %s",
        (key,),
    )
    if updated.rowcount == 0:
        # No session in this statement's snapshot: the reset comes before any creating it
        # meanwhile, whose messages (committed by now or not) it must leave alone.
        return False
    db.execute("DELETE FROM gateway_messages WHERE session_key = %s", (key,))
    _notify(key, db)
    return True


def delete(key: str, db: Connection) -> bool:
    # The messages go with the row (ON DELETE CASCADE).
    deleted = db.execute("DELETE FROM gateway_sessions WHERE key = %s", (key,)).rowcount > 0
    _notify(key, db)
    return deleted
