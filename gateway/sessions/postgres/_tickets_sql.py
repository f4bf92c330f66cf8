"""The ticket queues in PostgreSQL: blocking SQL, run by ``PgDatabase`` inside a transaction.

A waiter is a row of ``gateway_tickets``; its ``id`` (a sequence) is its place. A ``session``
ticket is admitted when it is the lowest of its key; a ``slot`` ticket when fewer than
``max_concurrent`` slot tickets are lower. Inserts and deletes on one key's queue are serialised
by a transaction-scoped advisory lock on the key (and on the slot queue by one for all slots,
always taken after the key's: one order, no deadlock), so id order is commit order and a ticket
never sees a lower one commit after it. Admission is monotonic: tickets only join at the back.

Releasing tickets notifies (``gateway_admission``, payload: the owner token) every other host
whose ticket may have been admitted; kill requests are notifications too (``gateway_kill``,
payload ``"<owner token> <ticket id>"``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from gateway.sessions.postgres.host import NAMESPACE

_KEYS = NAMESPACE + 1  # advisory xact locks of session queues: (_KEYS, hashtext(key))
_SLOTS = NAMESPACE + 2  # of the slot queue: (_SLOTS, 0)

Connection = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Fronts:
    ours: list[int]  # this owner's tickets at the front of the queues a release touched
    others: set[str]  # other owners whose ticket the release may have admitted


@dataclass(frozen=True, slots=True)
class PollResult:
    admitted: list[int]
    others: set[str]  # other owners at the front of the queues we wait on


def enqueue(
    key: str | None, owner: str, max_concurrent: int, db: Connection
) -> list[tuple[int, bool]]:
    """Queue for the session lane of ``key`` (and a slot, when the lane is admitted at once) or,
    for ``None``, for a slot; returns the tickets with whether each is admitted."""
    if key is None:
        _lock_slots(db)
        return [_insert(db, "slot", "", owner, max_concurrent)]
    _lock_key(db, key)
    session = _insert(db, "session", key, owner, 1)
    if not session[1]:
        return [session]
    _lock_slots(db)
    return [session, _insert(db, "slot", "", owner, max_concurrent)]


def dequeue(
    tickets: Sequence[int], key: str | None, owner: str, max_concurrent: int, db: Connection
) -> Fronts:
    """Delete ``tickets``; returns who is now at the front, and notifies the other owners."""
    if key is not None:
        _lock_key(db, key)
    _lock_slots(db)
    db.execute("DELETE FROM gateway_tickets WHERE id = ANY(%s)", (list(tickets),))
    slots = _slot_front(db, max_concurrent)
    session = _session_front(db, key) if key is not None else []
    ours = [ticket for ticket, token in slots + session if token == owner]
    newcomers = session + (slots[-1:] if len(slots) == max_concurrent else [])
    others = {token for _, token in newcomers if token != owner}
    for token in others:
        db.execute("SELECT pg_notify('gateway_admission', %s)", (token,))
    return Fronts(ours, others)


def poll(
    keys: Collection[str], slots: bool, owner: str, max_concurrent: int, db: Connection
) -> PollResult:
    """Which of ``owner``'s tickets waiting on ``keys`` (and on the slot queue) are admitted, and
    which other owners hold the fronts."""
    fronts: list[tuple[int, str]] = []
    for key in keys:
        fronts.extend(_session_front(db, key))
    if slots:
        fronts.extend(_slot_front(db, max_concurrent))
    admitted = [ticket for ticket, token in fronts if token == owner]
    return PollResult(admitted, {token for _, token in fronts if token != owner})


def alive(tokens: Collection[str], db: Connection) -> set[str]:
    """The owners among ``tokens`` whose host still holds its presence lock."""
    rows = db.execute(
        "SELECT h.token FROM gateway_hosts AS h JOIN pg_locks AS l"
        " ON l.locktype = 'advisory' AND l.classid = %s AND l.objid = h.lock_key"
        " AND l.objsubid = 2 AND l.granted WHERE h.token = ANY(%s)",
        (NAMESPACE, list(tokens)),
    )
    return {token for (token,) in rows}


def reclaim(dead: Collection[str], db: Connection) -> int:
    """Delete the tickets (and host rows) of owners found dead, re-checked here; wakes every
    host (their waiters may now be admitted). Returns how many tickets went."""
    still_dead = set(dead) - alive(dead, db)
    if not still_dead:
        return 0
    gone = db.execute(
        "DELETE FROM gateway_tickets WHERE owner = ANY(%s)", (list(still_dead),)
    ).rowcount
    db.execute("DELETE FROM gateway_hosts WHERE token = ANY(%s)", (list(still_dead),))
    db.execute("SELECT pg_notify('gateway_admission', '*')")
    return gone


def request_kill(key: str, owner: str, db: Connection) -> tuple[int, str] | None:
    """The front session ticket of ``key`` and its owner (``None``: no run holds the key); for
    another owner the kill is marked on the ticket and notified."""
    front = _session_front(db, key)
    if not front:
        return None
    ticket, token = front[0]
    if token != owner:
        db.execute("UPDATE gateway_tickets SET kill_requested = true WHERE id = %s", (ticket,))
        db.execute("SELECT pg_notify('gateway_kill', %s)", (f"{token} {ticket}",))
    return ticket, token


def existing(tickets: Collection[int], db: Connection) -> dict[int, bool]:
    """Which of ``tickets`` still exist, and whether a kill was requested for each."""
    rows = db.execute(
        "SELECT id, kill_requested FROM gateway_tickets WHERE id = ANY(%s)", (list(tickets),)
    )
    return {int(ticket): bool(killed) for ticket, killed in rows}


def _insert(db: Connection, kind: str, key: str, owner: str, admits: int) -> tuple[int, bool]:
    row = db.execute(
        "INSERT INTO gateway_tickets (kind, key, owner, created_at_ms) VALUES (%s, %s, %s, %s)"
        " RETURNING id",
        (kind, key, owner, int(time.time() * 1000)),
    ).fetchone()
    assert row is not None
    ticket = int(row[0])
    ahead = db.execute(
        "SELECT count(*) FROM gateway_tickets WHERE kind = %s AND key = %s AND id < %s",
        (kind, key, ticket),
    ).fetchone()
    assert ahead is not None
    return ticket, int(ahead[0]) < admits


def _session_front(db: Connection, key: str) -> list[tuple[int, str]]:
    rows = db.execute(
        "SELECT id, owner FROM gateway_tickets WHERE kind = 'session' AND key = %s"
        " ORDER BY id LIMIT 1",
        (key,),
    )
    return [(int(ticket), str(token)) for ticket, token in rows]


def _slot_front(db: Connection, max_concurrent: int) -> list[tuple[int, str]]:
    rows = db.execute(
        "SELECT id, owner FROM gateway_tickets WHERE kind = 'slot' AND key = ''"
        " ORDER BY id LIMIT %s",
        (max_concurrent,),
    )
    return [(int(ticket), str(token)) for ticket, token in rows]


def _lock_key(db: Connection, key: str) -> None:
    db.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_KEYS, key))


def _lock_slots(db: Connection) -> None:
    db.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_SLOTS,))
