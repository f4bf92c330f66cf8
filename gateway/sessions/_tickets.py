"""The ticket tables behind the lanes: blocking SQL, run in a worker thread inside a transaction.

A waiter is a row of ``tickets``; ``id`` is an AUTOINCREMENT counter shared by every process,
so ticket order is arrival order. A ``session`` ticket is admitted when it is the lowest of its
key; a ``slot`` ticket when fewer than ``max_concurrent`` slot tickets are lower. Admission is
monotonic: tickets only ever join at the back, so once a ticket is admitted it stays admitted
until it is deleted; a stale read can delay an admission, never grant a wrong one.

``kills`` holds kill requests addressed to one session ticket (the active run of a key); rows
go away with their ticket.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.sessions import _owners

Kind = Literal["session", "slot"]
SESSION: Kind = "session"
SLOT: Kind = "slot"
_SLOT_KEY = ""  # slot tickets share one queue

VERSION = 1
SCHEMA = (
    """
    CREATE TABLE tickets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL CHECK (kind IN ('session', 'slot')),
        key TEXT NOT NULL,
        owner TEXT NOT NULL,
        pid INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL
    )
    """,
    "CREATE INDEX tickets_queue ON tickets (kind, key, id)",
    "CREATE TABLE kills (ticket INTEGER PRIMARY KEY, requested_at_ms INTEGER NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class LaneTicket:
    """One waiter or holder, in any process (see ``SQLiteSessionStore.lane_tickets``)."""

    id: int
    kind: Kind
    key: str | None
    owner: str
    pid: int
    created_at_ms: int


@dataclass(frozen=True, slots=True)
class Fronts:
    ours: list[int]  # this owner's tickets at the front of the queues a release touched
    others: set[str]  # other owners whose ticket the release may have admitted


@dataclass(frozen=True, slots=True)
class PollResult:
    admitted: list[int]  # this owner's tickets that are now admitted
    killed: list[int]  # this owner's tickets with a kill request
    dead: list[str]  # other owners blocking a queue that are no longer alive


def enqueue(
    key: str | None, owner: _owners.Owner, max_concurrent: int, db: sqlite3.Connection
) -> list[tuple[int, bool]]:
    """Queue for the session lane of ``key`` or, for ``None``, for a slot; returns the tickets
    added with whether each is admitted. A session ticket admitted at once is followed by its
    slot ticket in the same transaction (saving a round trip on the uncontended path)."""
    if key is None:
        return [_insert(db, SLOT, _SLOT_KEY, owner, max_concurrent)]
    session = _insert(db, SESSION, key, owner, 1)
    if not session[1]:
        return [session]
    return [session, _insert(db, SLOT, _SLOT_KEY, owner, max_concurrent)]


def dequeue(
    tickets: Sequence[int],
    key: str | None,
    owner: _owners.Owner,
    max_concurrent: int,
    db: sqlite3.Connection,
) -> Fronts:
    """Delete ``tickets`` (and kills addressed to them); returns who is now at the front of the
    session queue of ``key`` and of the slot queue."""
    marks = ",".join("?" * len(tickets))
    db.execute(f"DELETE FROM tickets WHERE id IN ({marks})", tickets)
    db.execute(f"DELETE FROM kills WHERE ticket IN ({marks})", tickets)
    slots = _slot_front(db, max_concurrent)
    session = _session_front(db, key) if key is not None else []
    ours = [ticket for ticket, token in slots + session if token == owner.token]
    # Freeing one slot admits the ticket that just moved into the last admitted place.
    newcomers = session + (slots[-1:] if len(slots) == max_concurrent else [])
    others = {token for _, token in newcomers if token != owner.token}
    return Fronts(ours, others)


def poll(
    keys: Collection[str],
    slots: bool,
    kills: bool,
    owner: _owners.Owner,
    max_concurrent: int,
    db: sqlite3.Connection,
) -> PollResult:
    """What changed for ``owner``: which of its tickets waiting on ``keys`` (session queues) or,
    if ``slots``, on the slot queue are admitted; if ``kills``, which of its tickets have a kill
    request; and which other owners at the front of those queues have died."""
    fronts: list[tuple[int, str]] = []
    for key in keys:
        fronts.extend(_session_front(db, key))
    if slots:
        fronts.extend(_slot_front(db, max_concurrent))
    killed: list[int] = []
    if kills:
        rows = db.execute(
            "SELECT k.ticket FROM kills AS k JOIN tickets AS t ON t.id = k.ticket"
            " WHERE t.owner = ?",
            (owner.token,),
        )
        killed = [ticket for (ticket,) in rows]
    others = {token for _, token in fronts if token != owner.token}
    dead = [token for token in others if not _owners.is_alive(owner.directory, token)]
    admitted = [ticket for ticket, token in fronts if token == owner.token]
    return PollResult(admitted, killed, dead)


def reclaim(dead: Collection[str], owner: _owners.Owner, db: sqlite3.Connection) -> None:
    """Delete the tickets of owners found dead (re-checked here, inside the write transaction)."""
    for token in dead:
        if token != owner.token and not _owners.is_alive(owner.directory, token):
            _forget_owner(db, owner.directory, token)


def reclaim_all(owner: _owners.Owner, db: sqlite3.Connection) -> list[str]:
    """Delete the tickets of every dead owner and their files; returns their tokens."""
    tokens = [token for (token,) in db.execute("SELECT DISTINCT owner FROM tickets")]
    dead = [t for t in tokens if t != owner.token and not _owners.is_alive(owner.directory, t)]
    for token in dead:
        _forget_owner(db, owner.directory, token)
    return dead + _owners.sweep(owner.directory, keep=owner.token)


def request_kill(key: str, owner: _owners.Owner, db: sqlite3.Connection) -> tuple[int, str] | None:
    """Address a kill request to the front session ticket of ``key``; returns it with its
    owner, or ``None`` if no live process has a run on ``key``. A ticket of this owner gets no
    row: the caller cancels it in process."""
    while True:
        front = _session_front(db, key)
        if not front:
            return None
        ticket, token = front[0]
        if token == owner.token:
            return ticket, token
        if _owners.is_alive(owner.directory, token):
            db.execute(
                "INSERT OR IGNORE INTO kills (ticket, requested_at_ms) VALUES (?, ?)",
                (ticket, _now_ms()),
            )
            return ticket, token
        _forget_owner(db, owner.directory, token)


def list_tickets(db: sqlite3.Connection) -> list[LaneTicket]:
    rows = db.execute(
        "SELECT id, kind, key, owner, pid, created_at_ms FROM tickets ORDER BY id"
    ).fetchall()
    return [
        LaneTicket(id, kind, None if kind == SLOT else key, owner, pid, created)
        for id, kind, key, owner, pid, created in rows
    ]


def _insert(
    db: sqlite3.Connection, kind: Kind, key: str, owner: _owners.Owner, admits: int
) -> tuple[int, bool]:
    cursor = db.execute(
        "INSERT INTO tickets (kind, key, owner, pid, created_at_ms) VALUES (?, ?, ?, ?, ?)",
        (kind, key, owner.token, owner.pid, _now_ms()),
    )
    ticket = cursor.lastrowid
    assert ticket is not None
    (ahead,) = db.execute(
        "SELECT count(*) FROM tickets WHERE kind = ? AND key = ? AND id < ?", (kind, key, ticket)
    ).fetchone()
    return ticket, ahead < admits


def _session_front(db: sqlite3.Connection, key: str) -> list[tuple[int, str]]:
    return db.execute(
        "SELECT id, owner FROM tickets WHERE kind = 'session' AND key = ? ORDER BY id LIMIT 1",
        (key,),
    ).fetchall()


def _slot_front(db: sqlite3.Connection, max_concurrent: int) -> list[tuple[int, str]]:
    return db.execute(
        "SELECT id, owner FROM tickets WHERE kind = 'slot' AND key = ? ORDER BY id LIMIT ?",
        (_SLOT_KEY, max_concurrent),
    ).fetchall()


def _forget_owner(db: sqlite3.Connection, directory: Path, token: str) -> None:
    db.execute(
        "DELETE FROM kills WHERE ticket IN (SELECT id FROM tickets WHERE owner = ?)", (token,)
    )
    db.execute("DELETE FROM tickets WHERE owner = ?", (token,))
    # If this transaction then fails, the tickets stay and the missing file still reads as dead.
    _owners.forget(directory, token)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
