"""Admission shared by every process on one state directory: lane tickets in SQLite.

Files under the state directory (``<state>/gateway/``):
- ``lanes.sqlite3``: lane tickets and kill requests, WAL, ``synchronous=NORMAL`` (see ``lanes``);
- ``owners/<token>.lock``: one per open admission, the liveness signal of its tickets.

Every process opens its own ``SharedAdmission`` on the same directory and must run ``serve`` (in
the app's lifespan nursery) for it to work. A SIGKILLed process's tickets are reclaimed by the
others (see ``_owners``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio

from gateway.sessions import _tickets
from gateway.sessions._db import Database
from gateway.sessions._owners import Owner
from gateway.sessions.admission import AdmissionStatistics
from gateway.sessions.lanes import Lanes, LaneTicket

__all__ = ["DEFAULT_POLL_INTERVAL", "SharedAdmission"]

DEFAULT_POLL_INTERVAL = 0.015


class SharedAdmission:
    """An ``Admission`` that holds across processes. Every process must pass the same
    ``max_concurrent``: it is one cap for all of them. ``poll_interval`` (seconds) is how often a
    process with waiters or held lanes looks for other processes' releases and kill requests
    when no doorbell rang."""

    def __init__(
        self,
        directory: Path,
        *,
        max_concurrent: int = 4,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.directory = directory
        self.max_concurrent = max_concurrent
        self._poll_interval = poll_interval
        self._db = Database(directory / "lanes.sqlite3", synchronous="NORMAL")
        self._owner: Owner | None = None
        self._lanes: Lanes | None = None
        self._scope: trio.CancelScope | None = None
        self._done: trio.Event | None = None
        self._closed = False

    @property
    def shared(self) -> bool:
        return True

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the tables, claim this process's owner identity, delete dead processes'
        tickets, report started, then watch for other processes' releases and kill requests
        until cancelled or ``aclose``d."""
        if self._done is not None:
            raise RuntimeError("serve() was already started")
        self._done = trio.Event()
        try:
            with trio.CancelScope() as self._scope:
                if self._closed:
                    return
                await self._db.open(_tickets.VERSION, _tickets.SCHEMA)
                owner = await trio.to_thread.run_sync(Owner.claim, self.directory / "owners")
                self._owner = owner
                self._lanes = Lanes(
                    self._db,
                    owner,
                    max_concurrent=self.max_concurrent,
                    poll_interval=self._poll_interval,
                )
                await self._lanes.serve(task_status=task_status)
        finally:
            self._done.set()

    async def aclose(self) -> None:
        """Stop ``serve``, close the file and give up the owner identity (call it once no run
        uses admission any more); idempotent, shielded."""
        with trio.CancelScope(shield=True):
            self._closed = True
            if self._scope is not None:
                self._scope.cancel()
            if self._done is not None:
                await self._done.wait()
            await self._db.aclose()
            if self._owner is not None:
                await trio.to_thread.run_sync(self._owner.release)

    def admit(
        self, key: str | None, on_kill: Callable[[], object]
    ) -> AbstractAsyncContextManager[None]:
        """See ``Admission.admit``; ``RuntimeError`` if ``serve`` is not running."""
        if self._lanes is None:
            raise RuntimeError("the admission's serve() task is not running")
        return self._lanes.admit(key, on_kill)

    async def request_kill(self, key: str) -> bool:
        """In this process the holder's ``on_kill`` runs before this returns; in another,
        within about one poll interval (at once when its doorbell works)."""
        if self._lanes is None:
            return False
        return await self._lanes.request_kill(key)

    def statistics(self) -> AdmissionStatistics:
        if self._lanes is None:
            return AdmissionStatistics(self.max_concurrent, 0, 0, 0, 0, ())
        return self._lanes.statistics()

    async def tickets(self) -> list[LaneTicket]:
        """Every queued or held ticket of every process, oldest first (tests, diagnostics)."""
        if self._lanes is None:
            return []
        return await self._lanes.tickets()

    async def ping(self) -> bool:
        if self._lanes is None:
            return False
        try:
            await self._db.read(_select_one)
        except (sqlite3.Error, OSError, RuntimeError):
            return False
        return True


def _select_one(connection: sqlite3.Connection) -> object:
    return connection.execute("SELECT 1").fetchone()
