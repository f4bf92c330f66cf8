"""The transcript tables: blocking SQL, run in a worker thread inside a transaction.

``content``, ``tool_calls`` and ``usage`` are stored as JSON text (``content`` may be a string, a
list of parts or SQL NULL). ``seq`` numbers a session's messages from 1; ``usage`` is kept on a
turn's last message; every message of a turn carries the turn's ``run_id`` and ``status``.
Keys of a message other than role, content, name, tool_calls and tool_call_id are not kept.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any, cast

from gateway.sessions.base import (
    HistoryPage,
    RecentMessages,
    SessionInfo,
    TranscriptEntry,
    TurnStatus,
)
from gateway.types import ChatMessage, UsageDict

VERSION = 1
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
        PRIMARY KEY (session_key, seq)
    ) WITHOUT ROWID
    """,
)
STATUSES = ("complete", "aborted", "error")

_COLUMNS = (
    "seq, role, content, name, tool_calls, tool_call_id, run_id, status, usage, created_at_ms"
)


def append(
    key: str,
    agent_id: str,
    run_id: str,
    messages: Sequence[ChatMessage],
    status: TurnStatus,
    usage: UsageDict | None,
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
    rows = []
    for offset, message in enumerate(messages, start=1):
        rows.append(
            (
                key,
                last + offset,
                message["role"],
                _dump(message.get("content")),
                message.get("name"),
                _dump(message.get("tool_calls")),
                message.get("tool_call_id"),
                run_id,
                status,
                _dump(usage) if offset == len(messages) else None,
                now,
            )
        )
    db.executemany(f"INSERT INTO messages (session_key, {_COLUMNS}) VALUES ({'?, ' * 10}?)", rows)


def context(key: str, limit: int | None, db: sqlite3.Connection) -> list[ChatMessage]:
    rows = db.execute(
        "SELECT role, content, name, tool_calls, tool_call_id, status FROM messages"
        " WHERE session_key = ? AND status != 'error' ORDER BY seq DESC LIMIT ?",
        (key, -1 if limit is None else limit),
    ).fetchall()
    messages: list[ChatMessage] = []
    for role, content, name, tool_calls, tool_call_id, status in reversed(rows):
        message = _message(role, content, name, tool_calls, tool_call_id)
        if status == "aborted" and role == "assistant":
            # Calls cut off by the abort were never complete nor answered: keep only the text.
            message.pop("tool_calls", None)
            if not message["content"]:
                continue
        messages.append(message)
    # Tool results whose assistant tool_calls message fell outside the window are orphans.
    start = 0
    while start < len(messages) and messages[start]["role"] == "tool":
        start += 1
    return messages[start:]


def history(key: str, limit: int, cursor: str | None, db: sqlite3.Connection) -> HistoryPage | None:
    after = decode_cursor(cursor)
    if db.execute("SELECT 1 FROM sessions WHERE key = ?", (key,)).fetchone() is None:
        return None
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM messages WHERE session_key = ? AND seq > ? ORDER BY seq LIMIT ?",
        (key, after, limit + 1),
    ).fetchall()
    entries = [_entry(*row) for row in rows[:limit]]
    more = len(rows) > limit
    return HistoryPage(entries, encode_cursor(entries[-1].seq) if more else None)


def recent(key: str, limit: int, db: sqlite3.Connection) -> RecentMessages | None:
    if db.execute("SELECT 1 FROM sessions WHERE key = ?", (key,)).fetchone() is None:
        return None
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM messages WHERE session_key = ? ORDER BY seq DESC LIMIT ?",
        (key, limit),
    ).fetchall()
    (total,) = db.execute("SELECT count(*) FROM messages WHERE session_key = ?", (key,)).fetchone()
    return RecentMessages([_entry(*row) for row in reversed(rows)], int(total))


def list_sessions(agent_id: str | None, limit: int, db: sqlite3.Connection) -> list[SessionInfo]:
    rows = db.execute(
        "SELECT key, agent_id, created_at_ms, updated_at_ms,"
        " (SELECT count(*) FROM messages WHERE session_key = s.key)"
        " FROM sessions AS s WHERE ?1 IS NULL OR agent_id = ?1"
        " ORDER BY updated_at_ms DESC, key LIMIT ?2",
        (agent_id, limit),
    ).fetchall()
    return [SessionInfo(*row) for row in rows]


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


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The ``seq`` a cursor points after (0 for ``None``); ``ValueError`` if it is not ours."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        label, _, seq = text.partition(":")
        if label == "after" and seq.isascii() and seq.isdigit():
            return int(seq)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise ValueError(f"invalid history cursor {cursor!r}")


def _message(
    role: str,
    content: str | None,
    name: str | None,
    tool_calls: str | None,
    tool_call_id: str | None,
) -> ChatMessage:
    message: ChatMessage = {"role": role, "content": _load(content)}
    if name is not None:
        message["name"] = name
    if tool_calls is not None:
        message["tool_calls"] = _load(tool_calls)
    if tool_call_id is not None:
        message["tool_call_id"] = tool_call_id
    return message


def _entry(
    seq: int,
    role: str,
    content: str | None,
    name: str | None,
    tool_calls: str | None,
    tool_call_id: str | None,
    run_id: str,
    status: str,
    usage: str | None,
    created_at_ms: int,
) -> TranscriptEntry:
    return TranscriptEntry(
        seq=seq,
        message=_message(role, content, name, tool_calls, tool_call_id),
        run_id=run_id,
        status=cast(TurnStatus, status),
        created_at_ms=created_at_ms,
        usage=_load(usage),
    )


def _dump(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
