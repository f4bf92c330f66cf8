"""Admission shared by every host on one PostgreSQL database (an ``Admission``, see
``gateway.sessions.admission`` for the promises), on the queues of ``_tickets_sql``.

- Waiting is in memory: each waiter has a ``trio.Event``. A release that may admit another
  host's ticket notifies it (``gateway_admission``); the host then polls the fronts it waits on.
  While anything waits, it also polls every ``POLL_INTERVAL`` (missed notifications, dead owners).
- Dead hosts: an owner at the front of a queue we wait on whose presence lock has been missing for
  ``DEAD_AFTER`` seconds is dead; its tickets are deleted and everyone is woken (``host``).
- Kills: ``request_kill`` calls the holder's ``on_kill`` directly when this host holds the key;
  otherwise it notifies the holder's host (``gateway_kill``), which calls it there at once.
- A host whose listener reconnects checks its tickets: a run whose ticket is gone (the host was
  taken for dead meanwhile), holding its lane or waiting, is killed; so is one whose ticket
  carries a kill requested while the notification could not reach it.
- The database unavailable: a stateless run falls back to this host's own cap (the one cap for
  all hosts does not hold until the database is back, and says so in the log); a stateful run
  gets ``StoreUnavailable`` (503). A release that cannot be written is retried by the poller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

from gateway.sessions.admission import AdmissionStatistics, OnKill
from gateway.sessions.postgres import _tickets_sql as sql
from gateway.sessions.postgres.connection import PgDatabase, StoreUnavailable
from gateway.sessions.postgres.host import DEAD_AFTER, Host

logger = logging.getLogger("gateway.sessions")

POLL_INTERVAL = 0.25


@dataclass(slots=True, eq=False)
class _Lane:
    key: str | None
    on_kill: OnKill


@dataclass(slots=True, eq=False)
class _Waiter:
    kind: str  # "session" | "slot"
    lane: _Lane
    event: trio.Event


class PgAdmission:
    """See the module docstring. ``serve`` must run (it starts the host's listener)."""

    def __init__(self, db: PgDatabase, host: Host, *, max_concurrent: int) -> None:
        self._db = db
        self._host = host
        self._max = max_concurrent
        self._waiting: dict[int, _Waiter] = {}
        self._session_tickets: dict[int, _Lane] = {}  # ours, waiting or held
        self._held: dict[str, _Lane] = {}
        self._slots_held = 0
        self._unreleased: list[tuple[list[int], str | None]] = []
        self._fallback = trio.Semaphore(max_concurrent)
        self._fallback_held = 0
        self._poke = trio.Event()
        self._dead_since: dict[str, float] = {}
        self._check_tickets = False

    @property
    def shared(self) -> bool:
        return True

    # Notifications (called on the trio thread by the host's listener)

    def notified(self, channel: str, payload: str) -> None:
        if channel == "gateway_admission" and payload in (self._host.token, "*"):
            self._poke.set()
        elif channel == "gateway_kill":
            token, _, ticket = payload.partition(" ")
            if token == self._host.token and ticket.isdigit():
                lane = self._session_tickets.get(int(ticket))
                if lane is not None:
                    lane.on_kill()

    def reconnected(self) -> None:
        self._check_tickets = True
        self._poke.set()

    # Admission

    def admit(self, key: str | None, on_kill: OnKill) -> AbstractAsyncContextManager[None]:
        return self._admit(key, on_kill)

    @asynccontextmanager
    async def _admit(self, key: str | None, on_kill: OnKill) -> AsyncIterator[None]:
        lane = _Lane(key, on_kill)
        tickets: list[int] = []
        local = False
        has_slot = False
        try:
            try:
                queued = await self._db.run(partial(sql.enqueue, key, self._host.token, self._max))
            except StoreUnavailable:
                if key is not None:
                    raise
                local = True
            if local:
                await self._fallback.acquire()
                self._fallback_held += 1
                has_slot = True
                logger.warning("database unavailable: a stateless run admitted by this host only")
            else:
                waiters = self._register(key, lane, queued, tickets)
                await self._wait(waiters[0])
                if key is not None:
                    slot = waiters[1] if len(waiters) > 1 else None
                    if slot is None:
                        [(ticket, admitted)] = await self._db.run(
                            partial(sql.enqueue, None, self._host.token, self._max)
                        )
                        [slot] = self._register(None, lane, [(ticket, admitted)], tickets)
                    await self._wait(slot)
                has_slot = True
                self._slots_held += 1
            yield
        finally:
            if local:
                if has_slot:  # not when cancelled while waiting for it
                    self._fallback_held -= 1
                    self._fallback.release()
            else:
                if has_slot:
                    self._slots_held -= 1
                self._forget(key, lane, tickets)
                if tickets:
                    with trio.CancelScope(shield=True):
                        await self._release(tickets, key)

    def _register(
        self, key: str | None, lane: _Lane, queued: list[tuple[int, bool]], tickets: list[int]
    ) -> list[_Waiter]:
        waiters: list[_Waiter] = []
        for ticket, admitted in queued:
            tickets.append(ticket)
            kind = "session" if key is not None and not waiters else "slot"
            if kind == "session":
                self._session_tickets[ticket] = lane
            waiter = _Waiter(kind, lane, trio.Event())
            if admitted:
                self._grant(waiter)
            else:
                self._waiting[ticket] = waiter
                self._poke.set()  # the poller watches it
            waiters.append(waiter)
        return waiters

    async def _wait(self, waiter: _Waiter) -> None:
        if not waiter.event.is_set():
            self._poke.set()  # poll at once: an admission may have raced the registration
        await waiter.event.wait()

    def _grant(self, waiter: _Waiter) -> None:
        if waiter.kind == "session" and waiter.lane.key is not None:
            self._held[waiter.lane.key] = waiter.lane
        waiter.event.set()

    def _forget(self, key: str | None, lane: _Lane, tickets: list[int]) -> None:
        for ticket in tickets:
            self._waiting.pop(ticket, None)
            self._session_tickets.pop(ticket, None)
        if key is not None and self._held.get(key) is lane:
            del self._held[key]

    async def _release(self, tickets: list[int], key: str | None) -> None:
        try:
            fronts = await self._db.run(
                partial(sql.dequeue, tickets, key, self._host.token, self._max)
            )
        except StoreUnavailable:
            self._unreleased.append((tickets, key))
            self._poke.set()
            return
        self._admit_ours(fronts.ours)

    def _admit_ours(self, tickets: list[int]) -> None:
        for ticket in tickets:
            waiter = self._waiting.pop(ticket, None)
            if waiter is not None:
                self._grant(waiter)

    # Kills, statistics, readiness

    async def request_kill(self, key: str) -> bool:
        lane = self._held.get(key)
        if lane is not None:
            lane.on_kill()
            return True
        front = await self._db.run(partial(sql.request_kill, key, self._host.token))
        if front is None:
            return False
        ticket, token = front
        if token != self._host.token:
            return True
        lane = self._session_tickets.get(ticket)
        if lane is None:
            return False
        lane.on_kill()
        return True

    def statistics(self) -> AdmissionStatistics:
        waiting = list(self._waiting.values())
        return AdmissionStatistics(
            max_concurrent=self._max,
            sessions_held=len(self._held),
            sessions_waiting=sum(1 for w in waiting if w.kind == "session"),
            slots_held=self._slots_held + self._fallback_held,
            slots_waiting=sum(1 for w in waiting if w.kind == "slot")
            + self._fallback.statistics().tasks_waiting,
            held_keys=tuple(sorted(self._held)),
        )

    async def ping(self) -> bool:
        if not self._host.up:
            return False
        try:
            await self._db.run(_select_one, transaction=False)
        except StoreUnavailable:
            return False
        return True

    # Background

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll while anything waits (or a release is owed), until cancelled."""
        task_status.started()
        while True:
            if not (self._waiting or self._unreleased or self._check_tickets):
                self._poke = trio.Event()
                await self._poke.wait()
            with trio.move_on_after(POLL_INTERVAL):
                await self._poke.wait()
            self._poke = trio.Event()
            try:
                await self._poll()
            except StoreUnavailable:
                await trio.sleep(POLL_INTERVAL)
            except Exception:
                logger.exception("admission poll failed; retrying")
                await trio.sleep(1.0)

    async def aclose(self) -> None:
        return None

    async def _poll(self) -> None:
        while self._unreleased:
            tickets, key = self._unreleased[0]
            fronts = await self._db.run(
                partial(sql.dequeue, tickets, key, self._host.token, self._max)
            )
            self._unreleased.pop(0)
            self._admit_ours(fronts.ours)
        if self._check_tickets:
            self._check_tickets = False
            await self._check_held()
        waiting = list(self._waiting.values())
        if not waiting:
            return
        keys = {w.lane.key for w in waiting if w.kind == "session" and w.lane.key is not None}
        slots = any(w.kind == "slot" for w in waiting)
        result = await self._db.run(
            partial(sql.poll, keys, slots, self._host.token, self._max), transaction=False
        )
        self._admit_ours(result.admitted)
        await self._find_the_dead(result.others)

    async def _find_the_dead(self, owners: set[str]) -> None:
        if not owners:
            self._dead_since.clear()
            return
        alive = await self._db.run(partial(sql.alive, owners), transaction=False)
        now = time.monotonic()
        for token in owners - alive:
            self._dead_since.setdefault(token, now)
        for token in list(self._dead_since):
            if token in alive or token not in owners:
                del self._dead_since[token]
        dead = [t for t, since in self._dead_since.items() if now - since >= DEAD_AFTER]
        if dead:
            gone = await self._db.run(partial(sql.reclaim, dead))
            if gone:
                logger.warning("released %d lane ticket(s) of %d dead host(s)", gone, len(dead))
            for token in dead:
                self._dead_since.pop(token, None)
            self._poke.set()

    async def _check_held(self) -> None:
        """After a reconnect: give up the runs whose tickets were taken from us meanwhile,
        holding a lane or waiting (a lost place in a queue would never come round)."""
        ours = [*self._session_tickets, *self._waiting]
        if not ours:
            return
        kept = await self._db.run(partial(sql.existing, ours), transaction=False)
        lost: set[_Lane] = set()
        for ticket in ours:
            waiter = self._waiting.get(ticket)
            lane = waiter.lane if waiter is not None else self._session_tickets.get(ticket)
            if lane is None or lane in lost or kept.get(ticket) is False:
                continue
            lost.add(lane)
            if ticket in kept:
                logger.warning("a kill of the run on %s arrived while reconnecting", lane.key)
            else:
                logger.warning(
                    "a run on %s lost its place while the database was away; aborting",
                    lane.key or "no session",
                )
            lane.on_kill()


def _select_one(connection: sql.Connection) -> object:
    return connection.execute("SELECT 1").fetchone()
