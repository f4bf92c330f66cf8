"""Lanes: FIFO admission of runs, per session key and globally, across worker processes (the
engine of ``SharedAdmission``; see ``gateway.sessions.admission`` for the promises).

A run first queues for its session lane (one run at a time per key), then for one of the
``max_concurrent`` run slots shared by every process using the state directory. Both queues are
ticket rows in ``lanes.sqlite3`` (see ``_tickets``), so order and exclusion hold across
Hypercorn workers. That file is ephemeral coordination state: it runs with
``synchronous=NORMAL`` (no fsync per commit; it survives any process death, and a power loss
kills every holder anyway), apart from the transcripts so lane traffic never waits behind a
transcript fsync.

Cost: an uncontended run makes two small transactions (queue: session and slot tickets in one;
release: both deleted in one). Under load, the database thread batches concurrent ones.

Waking the next waiter:
- in this process, at once: releasing a lane deletes its tickets and, in the same transaction,
  reads the new fronts of both queues; any of our waiters there is woken through its
  ``trio.Event``. Waiters are registered by their insert's commit hook, and hooks run in commit
  order, so a release can never miss a waiter that queued before it.
- from another process: a release that admits another process's ticket rings that process's
  doorbell (see ``_doorbell``), which makes it poll at once. Polling is also the fallback:
  ``serve`` runs one task per process that, every ``poll_interval`` (15 ms by default) and only
  while this process has waiters or session lanes, reads the queue fronts it waits on and the
  kill requests for its tickets, in one read.

Dead owners: a ticket names its owner (see ``_owners``); the poller checks whether the owners at
the front of a queue it waits on still live, and deletes a dead owner's tickets. Waiters queued
behind a SIGKILLed holder proceed within about one poll interval.

Kills: ``request_kill(key)`` calls the holder's ``on_kill`` directly when this process holds the
key; otherwise it writes a kill row for the front ticket of the key and rings the owner, whose
poller then finds the row (at the latest one poll interval later) and calls ``on_kill`` there.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import trio

from gateway.sessions import _tickets
from gateway.sessions._db import Database
from gateway.sessions._doorbell import Doorbell
from gateway.sessions._owners import Owner
from gateway.sessions._tickets import SESSION, SLOT, Kind, LaneTicket
from gateway.sessions.admission import AdmissionStatistics

__all__ = ["Lane", "LaneTicket", "Lanes"]

logger = logging.getLogger("gateway.sessions")


class Lane:
    """One run's place in the queues: its key and what to call when it is killed."""

    __slots__ = ("key", "on_kill")

    def __init__(self, key: str | None, on_kill: Callable[[], object]) -> None:
        self.key = key
        self.on_kill = on_kill

    def kill(self) -> None:
        self.on_kill()


@dataclass(slots=True)
class _Waiter:
    kind: Kind
    lane: Lane
    event: trio.Event


class Lanes:
    """The lanes of one store. ``lane`` requires ``serve`` to be running."""

    def __init__(
        self, db: Database, owner: Owner, *, max_concurrent: int, poll_interval: float
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._db = db
        self._owner = owner
        self._max = max_concurrent
        self._poll_interval = poll_interval
        self._waiting: dict[int, _Waiter] = {}
        self._session_tickets: dict[int, Lane] = {}  # ours, waiting or held: kill targets
        self._held: dict[str, Lane] = {}
        self._slots_held = 0
        self._unreleased: list[tuple[list[int], str | None]] = []
        self._work = trio.Event()
        self._doorbell = Doorbell(owner.token)
        self._rung = trio.Event()
        self._serving = False

    @asynccontextmanager
    async def admit(self, key: str | None, on_kill: Callable[[], object]) -> AsyncIterator[None]:
        """See ``Admission.admit``."""
        if not self._serving:
            raise RuntimeError("the admission's serve() task is not running")
        lane = Lane(key, on_kill)
        # Every ticket we insert, as soon as it exists: the one record of what to release.
        tickets: list[int] = []
        has_slot = False
        try:
            slot: _Waiter | None = None
            if key is not None:
                session, *slots = await self._enqueue(key, lane, tickets)
                await self._wait(session)
                slot = slots[0] if slots else None
            if slot is None:
                (slot,) = await self._enqueue(None, lane, tickets)
            await self._wait(slot)
            has_slot = True
            self._slots_held += 1
            yield
        finally:
            if has_slot:
                self._slots_held -= 1
            if key is not None and self._held.get(key) is lane:
                del self._held[key]
            for ticket in tickets:
                self._waiting.pop(ticket, None)
                self._session_tickets.pop(ticket, None)
            if tickets:
                with trio.CancelScope(shield=True):
                    await self._release(tickets, key)

    async def request_kill(self, key: str) -> bool:
        """Abort the active run on ``key``, in whichever process holds it; returns whether
        there was one. In this process the run is cancelled before this returns; in another,
        within about one poll interval. A run still queued behind the active one is untouched.
        """
        lane = self._held.get(key)
        if lane is not None:
            lane.kill()
            return True
        front = await self._db.write(partial(_tickets.request_kill, key, self._owner))
        if front is None:
            return False
        ticket, token = front
        if token != self._owner.token:
            self._doorbell.ring(token)
            return True
        # Our own ticket at the front, admitted but its task not yet resumed.
        lane = self._session_tickets.get(ticket)
        if lane is None:
            return False
        lane.kill()
        return True

    def statistics(self) -> AdmissionStatistics:
        waiting = list(self._waiting.values())
        return AdmissionStatistics(
            max_concurrent=self._max,
            sessions_held=len(self._held),
            sessions_waiting=sum(1 for w in waiting if w.kind == SESSION),
            slots_held=self._slots_held,
            slots_waiting=sum(1 for w in waiting if w.kind == SLOT),
            held_keys=tuple(sorted(self._held)),
        )

    async def tickets(self) -> list[LaneTicket]:
        """Every ticket of every process, oldest first."""
        return await self._db.read(_tickets.list_tickets)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Reclaim dead owners' tickets, then poll for other processes' releases and kill
        requests until cancelled. Idle (no waiters, no session lane held here) it sleeps on an
        event and costs nothing."""
        await self._db.write(partial(_tickets.reclaim_all, self._owner))
        try:
            async with trio.open_nursery() as nursery:
                if await self._doorbell.open():
                    nursery.start_soon(self._answer_doorbell)
                self._serving = True
                task_status.started()
                await self._poll_forever()
        finally:
            self._serving = False
            self._doorbell.close()

    async def _answer_doorbell(self) -> None:
        while True:
            await self._doorbell.wait()
            self._rung.set()

    async def _poll_forever(self) -> None:
        while True:
            while not (self._waiting or self._session_tickets or self._unreleased):
                self._work = trio.Event()
                await self._work.wait()
            with trio.move_on_after(self._poll_interval):
                await self._rung.wait()
            # Reset before reading, so that a ring arriving during the read is not lost.
            self._rung = trio.Event()
            try:
                await self._poll()
            except Exception:
                # A failing disk must not take the whole app down with this task; the next
                # poll tries again.
                logger.exception("lane poll failed; retrying")
                await trio.sleep(1.0)

    async def _enqueue(self, key: str | None, lane: Lane, tickets: list[int]) -> list[_Waiter]:
        """Queue for the session lane of ``key`` (and a slot if that is admitted at once) or,
        for ``None``, for a slot. The new tickets are appended to ``tickets`` and their waiters
        registered by the commit hook, before any later transaction's hook (such as a release
        admitting them) runs, so no wake-up can be missed."""
        waiters: list[_Waiter] = []

        def register(queued: list[tuple[int, bool]]) -> None:
            for ticket, admitted in queued:
                tickets.append(ticket)
                kind = SESSION if key is not None and not waiters else SLOT
                if kind == SESSION:
                    self._session_tickets[ticket] = lane
                    self._work.set()  # the poller watches our session tickets for kills
                waiter = _Waiter(kind, lane, trio.Event())
                if admitted:
                    self._grant(waiter)
                else:
                    self._waiting[ticket] = waiter
                waiters.append(waiter)

        await self._db.write(partial(_tickets.enqueue, key, self._owner, self._max), register)
        return waiters

    async def _wait(self, waiter: _Waiter) -> None:
        if not waiter.event.is_set():
            self._work.set()  # the poller watches for other processes' releases
        await waiter.event.wait()

    async def _release(self, tickets: list[int], key: str | None) -> None:
        """Delete ``tickets`` and wake whichever of our waiters that admits. If the write fails
        (disk full ...), the poller keeps retrying: our process is alive, so nobody else would
        ever reclaim them and the lane would stay blocked."""
        try:
            dequeue = partial(_tickets.dequeue, tickets, key, self._owner, self._max)
            await self._db.write(dequeue, then=self._released)
        except Exception:
            self._unreleased.append((tickets, key))
            self._work.set()
            raise

    def _released(self, fronts: _tickets.Fronts) -> None:
        self._admit(fronts.ours)
        for token in fronts.others:
            self._doorbell.ring(token)

    def _admit(self, tickets: list[int]) -> None:
        for ticket in tickets:
            waiter = self._waiting.pop(ticket, None)
            if waiter is not None:
                self._grant(waiter)

    def _grant(self, waiter: _Waiter) -> None:
        # Counted as held from the moment we learn of the admission, so that the statistics
        # and in-process kills see it before the waiting task resumes.
        if waiter.kind == SESSION and waiter.lane.key is not None:
            self._held[waiter.lane.key] = waiter.lane
        waiter.event.set()

    async def _poll(self) -> None:
        while self._unreleased:
            tickets, key = self._unreleased.pop(0)
            await self._release(tickets, key)
        for _ in range(3):  # bounded: a new death right after a reclaim waits for next time
            waiting = list(self._waiting.values())
            keys = {w.lane.key for w in waiting if w.kind == SESSION and w.lane.key is not None}
            slots = any(w.kind == SLOT for w in waiting)
            kills = bool(self._session_tickets)
            read = partial(_tickets.poll, keys, slots, kills, self._owner, self._max)
            result = await self._db.read(read, then=self._apply)
            if not result.dead:
                return
            await self._db.write(partial(_tickets.reclaim, result.dead, self._owner))

    def _apply(self, result: _tickets.PollResult) -> None:
        self._admit(result.admitted)
        for ticket in result.killed:
            lane = self._session_tickets.get(ticket)
            if lane is not None:
                lane.kill()
