"""The SQLite transcript tables: blocking SQL, run in a worker thread inside a transaction.
Rows and what ``context`` keeps are ``gateway.sessions._transcript_rows``'s, shared with the
PostgreSQL store."""

from __future__ import annotations

import json
import sqlite3
import time
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
from gateway.types import ChatMessage, UsageDict

# The schema of a new file (the latest version), and the statements that bring a file of the
# version before up to each later version.
VERSION = 2
SCHEMA = (
    """
    CREATE TABLE sessions (
        key TEXT PRIMARY KEY,
        agent_id TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    )
    """,
    "CREATE INDEX sessions_by_update ON sessions (updated_at_ms)",
    "CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at_ms)",
    """
    CREATE TABLE messages (
        session_key TEXT NOT NULL,
        seq INTEGER NOT NULL,
        role TEXT NOT NULL,
        content TEXT,
        name TEXT,
        tool_calls TEXT,
        tool_call_id TEXT,
        run_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('complete', 'aborted', 'error')),
        usage TEXT,
        created_at_ms INTEGER NOT NULL,
        channel TEXT,
        PRIMARY KEY (session_key, seq)
    ) WITHOUT ROWID
    """,
)
MIGRATIONS = {
    2: ("ALTER TABLE messages ADD COLUMN channel TEXT",),
}
_LAST = "SELECT seq, run_id FROM messages WHERE session_key = ? ORDER BY seq DESC LIMIT 1"


def append(
    key: str,
    agent_id: str,
    run_id: str,
    messages: Sequence[ChatMessage],
    status: TurnStatus,
    usage: UsageDict | None,
    channel: str | None,
    db: sqlite3.Connection,
) -> None:
    now = _now_ms()
    db.execute(
        "INSERT INTO sessions (key, agent_id, created_at_ms, updated_at_ms) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET updated_at_ms = excluded.updated_at_ms",
        (key, agent_id, now, now),
    )
    (last,) = db.execute(
        "SELECT coalesce(max(seq), 0) FROM messages WHERE session_key = ?", (key,)
    ).fetchone()
    db.executemany(
        f"INSERT INTO messages ({rows.ROW_COLUMNS}) VALUES ({', '.join('?' * rows.ROW_WIDTH)})",
        rows.turn_rows(key, last, run_id, messages, status, usage, now, channel),
    )


def context(key: str, limit: int | None, db: sqlite3.Connection) -> list[ChatMessage]:
    found = db.execute(
        f"SELECT {rows.CONTEXT_COLUMNS} FROM messages"
        " WHERE session_key = ? AND status != 'error' ORDER BY seq DESC LIMIT ?",
        (key, -1 if limit is None else limit),
    )
    return rows.context_messages(found)


def history(key: str, limit: int, cursor: str | None, db: sqlite3.Connection) -> HistoryPage | None:
    after = rows.decode_cursor(cursor)
    if db.execute("SELECT 1 FROM sessions WHERE key = ?", (key,)).fetchone() is None:
        return None
    found = db.execute(
        f"SELECT {rows.ENTRY_COLUMNS} FROM messages WHERE session_key = ? AND seq > ?"
        " ORDER BY seq LIMIT ?",
        (key, after, limit + 1),
    ).fetchall()
    return rows.history_page(found, limit, db.execute(_LAST, (key,)).fetchone())


def appended(
    key: str, after: TranscriptMark, limit: int, db: sqlite3.Connection
) -> list[TranscriptEntry] | None:
    exists = db.execute("SELECT 1 FROM sessions WHERE key = ?", (key,)).fetchone() is not None
    found = db.execute(
        f"SELECT {rows.ENTRY_COLUMNS} FROM messages WHERE session_key = ? AND seq >= ?"
        " ORDER BY seq LIMIT ?",
        (key, after.seq, limit + 1),
    ).fetchall()
    return rows.appended_after(after, limit, exists, found)


def fingerprints(keys: Sequence[str], db: sqlite3.Connection) -> dict[str, object]:
    """Per existing session among ``keys``: its last update time and newest seq, which every
    append, reset and delete changes."""
    found = db.execute(
        "SELECT key, updated_at_ms,"
        " (SELECT coalesce(max(seq), 0) FROM messages WHERE session_key = s.key)"
        " FROM sessions AS s WHERE key IN (SELECT value FROM json_each(?))",
        (json.dumps(list(keys)),),
    ).fetchall()
    return {key: (updated, last) for key, updated, last in found}


def recent(key: str, limit: int, db: sqlite3.Connection) -> RecentMessages | None:
    if db.execute("SELECT 1 FROM sessions WHERE key = ?", (key,)).fetchone() is None:
        return None
    found = db.execute(
        f"SELECT {rows.ENTRY_COLUMNS} FROM messages WHERE session_key = ?"
        " ORDER BY seq DESC LIMIT ?",
        (key, limit),
    ).fetchall()
    (total,) = db.execute("SELECT count(*) FROM messages WHERE session_key = ?", (key,)).fetchone()
    return RecentMessages([rows.entry(*row) for row in reversed(found)], int(total))


def list_sessions(agent_id: str | None, limit: int, db: sqlite3.Connection) -> list[SessionInfo]:
    found = db.execute(
        "SELECT key, agent_id, created_at_ms, updated_at_ms,"
        " (SELECT count(*) FROM messages WHERE session_key = s.key)"
        " FROM sessions AS s WHERE ?1 IS NULL OR agent_id = ?1"
        " ORDER BY updated_at_ms DESC, key LIMIT ?2",
        (agent_id, limit),
    ).fetchall()
    return [SessionInfo(*row) for row in found]


def count_sessions(agent_id: str | None, db: sqlite3.Connection) -> int:
    (count,) = db.execute(
        "SELECT count(*) FROM sessions WHERE ?1 IS NULL OR agent_id = ?1", (agent_id,)
    ).fetchone()
    return int(count)


def reset(key: str, db: sqlite3.Connection) -> bool:
    db.execute("DELETE FROM messages WHERE session_key = ?", (key,))
    updated = db.execute("UPDATE sessions SET updated_at_ms = ? WHERE key = ?", (_now_ms(), key))
    return updated.rowcount > 0


def delete(key: str, db: sqlite3.Connection) -> bool:
    db.execute("DELETE FROM messages WHERE session_key = ?", (key,))
    return db.execute("DELETE FROM sessions WHERE key = ?", (key,)).rowcount > 0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
