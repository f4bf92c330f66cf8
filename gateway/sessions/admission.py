"""Admission: which runs may run now. Per session key, one run at a time in arrival order (the
session lane); in all, at most ``max_concurrent`` runs, in arrival order (the run slots).

``Admission`` is the seam; ``LocalAdmission`` is the implementation for one process alone on its
state: trio primitives only, no I/O, a few microseconds per run. When several processes share
the state (``--workers N``, ``hypercorn -w N``, several hosts), an implementation that holds
across processes is used instead (``gateway.sessions.shared_admission``, or the PostgreSQL one);
they keep the same promises:

- a run waits for its session lane (a stateful run; ``key`` ``None``: a stateless run has no
  lane), then for a slot; each queue is FIFO;
- a waiter that is cancelled leaves both queues at once;
- while a run holds its session lane (waiting for a slot or running), ``request_kill(key)``, from
  any process, calls that run's ``on_kill`` (the runtime aborts the run: admission owns no
  cancel scope);
- leaving the block releases both, and the next waiters are admitted at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import trio

OnKill = Callable[[], object]


@dataclass(frozen=True, slots=True)
class AdmissionStatistics:
    """This process's view at one moment."""

    max_concurrent: int
    sessions_held: int
    sessions_waiting: int
    slots_held: int
    slots_waiting: int
    held_keys: tuple[str, ...]


class Admission(Protocol):
    @property
    def shared(self) -> bool:
        """Whether admission holds across processes (and costs I/O per run)."""
        ...

    def admit(self, key: str | None, on_kill: OnKill) -> AbstractAsyncContextManager[None]:
        """Wait for the session lane of ``key`` (``None``: none), then for a run slot; the block
        runs admitted. See the module docstring for the promises."""
        ...

    async def request_kill(self, key: str) -> bool:
        """Call ``on_kill`` of the run holding the lane of ``key``, wherever it runs; returns
        whether there was one."""
        ...

    def statistics(self) -> AdmissionStatistics: ...

    async def ping(self) -> bool:
        """Whether admission works (readiness probes); never raises."""
        ...

    async def serve(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """Background work, in the app's lifespan nursery: reports readiness, then runs until
        cancelled or ``aclose``d (or returns, when there is none)."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True, eq=False)
class _Lane:
    """One session key: a fair lock and who holds it."""

    lock: trio.Lock
    users: int = 0  # holder and waiters: the lane is forgotten when this drops to 0
    on_kill: OnKill | None = None  # the holder's


class LocalAdmission:
    """Admission inside one process. ``trio.Lock`` and ``trio.Semaphore`` hand over to the
    longest waiter when released, so both queues are FIFO and nobody barges in."""

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._max = max_concurrent
        self._slots = trio.Semaphore(max_concurrent)
        self._lanes: dict[str, _Lane] = {}
        self._slots_waiting = 0

    @property
    def shared(self) -> bool:
        return False

    def admit(self, key: str | None, on_kill: OnKill) -> AbstractAsyncContextManager[None]:
        if key is None:
            return _Slot(self)
        return self._session(key, on_kill)

    @asynccontextmanager
    async def _session(self, key: str, on_kill: OnKill) -> AsyncIterator[None]:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(trio.Lock())
        lane.users += 1
        try:
            async with lane.lock:
                lane.on_kill = on_kill
                try:
                    async with _Slot(self):
                        yield
                finally:
                    lane.on_kill = None
        finally:
            lane.users -= 1
            if not lane.users:
                del self._lanes[key]

    async def request_kill(self, key: str) -> bool:
        lane = self._lanes.get(key)
        if lane is None or lane.on_kill is None:
            return False
        lane.on_kill()
        return True

    def statistics(self) -> AdmissionStatistics:
        held = tuple(sorted(key for key, lane in self._lanes.items() if lane.on_kill is not None))
        waiting = sum(lane.users for lane in self._lanes.values()) - len(held)
        return AdmissionStatistics(
            max_concurrent=self._max,
            sessions_held=len(held),
            sessions_waiting=waiting,
            slots_held=self._max - self._slots.value,
            slots_waiting=self._slots_waiting,
            held_keys=held,
        )

    async def ping(self) -> bool:
        return True

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()  # nothing to do in the background

    async def aclose(self) -> None:
        return None


class _Slot:
    """One run slot of a ``LocalAdmission``, held inside ``async with`` (a class, not a
    generator: it is held for each stateless run's whole life, and this is smaller)."""

    __slots__ = ("_admission",)

    def __init__(self, admission: LocalAdmission) -> None:
        self._admission = admission

    async def __aenter__(self) -> None:
        admission = self._admission
        if not admission._slots.value:
            admission._slots_waiting += 1
            try:
                await admission._slots.acquire()
            finally:
                admission._slots_waiting -= 1
        else:
            admission._slots.acquire_nowait()

    async def __aexit__(self, *exc_info: object) -> None:
        self._admission._slots.release()
