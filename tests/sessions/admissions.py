"""What the admission contract tests share: the implementations opened as several instances (each
one a process or host of its own, on the same state directory or database), runs that record
what admission does to them, and a TCP relay that cuts one host off from PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import trio

from gateway.sessions.admission import Admission, AdmissionStatistics, LocalAdmission
from gateway.sessions.postgres.store import PgStore
from gateway.sessions.state_admission import StateAdmission

from .conftest import wait_until

Open = Callable[[int], Awaitable[Admission]]


@asynccontextmanager
async def pg_hosts(url: str) -> AsyncIterator[Callable[[int], Awaitable[PgStore]]]:
    """Open serving ``PgStore``s on ``url`` (each one host); all are closed at the end."""
    stores: list[PgStore] = []
    async with trio.open_nursery() as nursery:

        async def open_host(max_concurrent: int) -> PgStore:
            store = PgStore(url, max_concurrent=max_concurrent)
            stores.append(store)
            await nursery.start(store.serve)
            return store

        try:
            yield open_host
        finally:
            for store in reversed(stores):
                await store.aclose()
            nursery.cancel_scope.cancel()  # the stores' background work


@asynccontextmanager
async def instances(kind: str, directory: Path, url: str | None) -> AsyncIterator[Open]:
    """Open serving admissions of one ``kind`` (``local``: one only; ``shared``: a
    ``StateAdmission`` on ``directory``; ``postgres``: a ``PgStore``'s on ``url``)."""
    if kind == "postgres":
        assert url is not None
        async with pg_hosts(url) as open_host:

            async def open_pg(max_concurrent: int) -> Admission:
                return (await open_host(max_concurrent)).admission

            yield open_pg
        return
    opened: list[Admission] = []
    async with trio.open_nursery() as nursery:

        async def open_one(max_concurrent: int) -> Admission:
            if kind == "local":
                assert not opened, "in-process admission has a single instance"
                opened.append(LocalAdmission(max_concurrent))
                return opened[-1]
            state = StateAdmission(directory, max_concurrent=max_concurrent, shared=True)
            opened.append(state)
            await nursery.start(state.serve)
            return state

        try:
            yield open_one
        finally:
            for admission in reversed(opened):
                await admission.aclose()


def waiting(admission: Admission) -> int:
    stats = admission.statistics()
    return stats.sessions_waiting + stats.slots_waiting


def total(*admissions: Admission) -> AdmissionStatistics:
    """The statistics of the distinct instances among ``admissions``, added up."""
    views = [a.statistics() for a in {id(a): a for a in admissions}.values()]
    return AdmissionStatistics(
        max_concurrent=views[0].max_concurrent,
        sessions_held=sum(v.sessions_held for v in views),
        sessions_waiting=sum(v.sessions_waiting for v in views),
        slots_held=sum(v.slots_held for v in views),
        slots_waiting=sum(v.slots_waiting for v in views),
        held_keys=tuple(sorted(key for v in views for key in v.held_keys)),
    )


def idle(max_concurrent: int) -> AdmissionStatistics:
    return AdmissionStatistics(max_concurrent, 0, 0, 0, 0, ())


@dataclass(eq=False)
class Run:
    """One run: admitted, it stays in its block until ``release`` (or a kill, which cancels
    ``scope`` as the runtime would)."""

    name: str
    admission: Admission
    key: str | None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    release: trio.Event = field(default_factory=trio.Event)
    entered: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    entered_at: float = math.inf
    killed_at: float = math.inf  # when its on_kill was called

    @property
    def killed(self) -> bool:
        return self.killed_at < math.inf

    def kill(self) -> None:
        self.killed_at = trio.current_time()
        self.scope.cancel()


class Runs:
    """Runs in ``nursery``, checked as they enter: never two on one key, never more than
    ``max_concurrent`` in all (unless not ``exclusive``: a host cut off from the database keeps
    running what it had). ``order`` is the order they entered in."""

    def __init__(self, nursery: trio.Nursery, max_concurrent: int, *, exclusive: bool = True):
        self._nursery = nursery
        self._max = max_concurrent
        self._exclusive = exclusive
        self._keys: set[str] = set()
        self._running = 0
        self._runs: list[Run] = []
        self.order: list[str] = []

    async def start(self, name: str, admission: Admission, key: str | None) -> Run:
        """Start a run; returns once it is admitted or has its place in a queue, so runs
        started one after the other arrive in that order. An instance counts each waiting run
        once: when it counts as many as it has runs not yet admitted, the new one is among them.
        (Not "one more than before": in process, a run taking a free lane counts as waiting
        for an instant, and may still have when the next run started.)"""
        run = Run(name, admission, key)
        self._runs.append(run)
        self._nursery.start_soon(self._run, run)
        await wait_until(lambda: run.entered.is_set() or waiting(admission) >= self._pending(run))
        return run

    def _pending(self, new: Run) -> int:
        return sum(
            1
            for run in self._runs
            if run.admission is new.admission and not (run.entered.is_set() or run.done.is_set())
        )

    async def _run(self, run: Run) -> None:
        with run.scope:
            async with run.admission.admit(run.key, run.kill):
                run.entered_at = trio.current_time()
                if self._exclusive:
                    assert run.key not in self._keys, f"{run.name}: {run.key} is already held"
                    assert self._running < self._max, f"{run.name}: past max_concurrent"
                self._running += 1
                if run.key is not None:
                    self._keys.add(run.key)
                self.order.append(run.name)
                run.entered.set()
                try:
                    await run.release.wait()
                finally:
                    self._running -= 1
                    self._keys.discard(run.key or "")
        run.done.set()


async def finished(run: Run, seconds: float = 5.0) -> float:
    """Wait for ``run`` to have left admission (released, cancelled or killed); returns when."""
    with trio.fail_after(seconds):
        await run.done.wait()
    return trio.current_time()


async def admitted(run: Run, seconds: float = 5.0) -> float:
    """Wait for ``run`` to be admitted; returns how long it waited since this call."""
    began = trio.current_time()
    with trio.fail_after(seconds):
        await run.entered.wait()
    return run.entered_at - began


class Relay:
    """A loopback TCP relay to the database port, standing for one host's network: ``cut``
    breaks every connection through it and refuses new ones; ``heal`` lets them through."""

    def __init__(self, target: int) -> None:
        self._target = target
        self._cut = False
        self._scopes: set[trio.CancelScope] = set()

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay until cancelled; reports the port it listens on."""
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._relay, listeners)

    def cut(self) -> None:
        self._cut = True
        for scope in self._scopes:
            scope.cancel()

    def heal(self) -> None:
        self._cut = False

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client:
            if self._cut:
                return
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    server = await trio.open_tcp_stream("127.0.0.1", self._target)
                    async with server, trio.open_nursery() as nursery:
                        nursery.start_soon(_pump, client, server, nursery.cancel_scope)
                        nursery.start_soon(_pump, server, client, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)


async def _pump(source: trio.SocketStream, sink: trio.SocketStream, both: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some():
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    both.cancel()  # one side ended: so does the other
