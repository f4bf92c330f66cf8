"""The gateway's life: starting, ready, stopping. How a shutdown begins under each launch, and
what it does, so that every launch keeps the same promises.

A shutdown begins (``Lifecycle.begin_shutdown``), once, when:
- ``gateway serve`` receives SIGTERM or SIGINT (``gateway.serve``), whose Hypercorn takes
  ``Lifecycle.stopping`` as its shutdown trigger;
- Hypercorn's CLI master was signalled: ``watch`` sees Hypercorn's own shutdown event (see
  ``gateway.hypercorn_worker``) as soon as Hypercorn's worker does;
- the parent process died (Hypercorn's master or ``gateway serve``'s supervisor was SIGKILLed, or
  OOM-killed): ``watch`` waits on the parent's multiprocessing sentinel, so an orphaned worker
  stops serving and exits within a second instead of listening on as an orphan.

What it does (``_stop``, one task in the app's nursery):
1. readiness answers false;
2. in-flight runs get ``grace`` to finish;
3. the rest are aborted: SSE clients get the ``shutdown`` error event and ``[DONE]``, WebSocket
   clients a ``shutdown`` event and close 1012, upstream requests are closed, transcripts record
   the turns as aborted;
4. at ``break_after``, connections still open are broken (``shutdown(2)`` on their sockets): a
   client that stopped reading pins Hypercorn's socket write, which is shielded from
   cancellation, so without this the process would never exit. Broken, the write fails and
   the process leaves through its normal path (stores closed, files removed);
5. at ``exit_after``, if the process is somehow still here, it exits (0) after running the
   registered exit hooks.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from gateway.hypercorn_worker import HypercornWorker
from gateway.listeners import break_connections

logger = logging.getLogger("gateway.serve")

# Under Hypercorn's CLI: the aborted streams' last events need this long before Hypercorn
# cancels what is left at the end of its --graceful-timeout.
GOODBYE_MARGIN = 0.5
# How often Hypercorn's shutdown event is looked at (Hypercorn's worker itself: every 0.1 s).
EVENT_POLL = 0.05


@dataclass(frozen=True, slots=True)
class StopTiming:
    """Seconds from the beginning of a shutdown (see the module docstring)."""

    grace: float
    break_after: float
    exit_after: float

    @classmethod
    def for_serve(cls, grace: float, hypercorn_graceful: float) -> StopTiming:
        """``gateway serve``: its Hypercorn cancels what is left at ``hypercorn_graceful``."""
        return cls(grace, hypercorn_graceful + 0.2, max(grace + 1.5, hypercorn_graceful + 0.5))

    @classmethod
    def for_hypercorn(cls, grace: float, graceful_timeout: float) -> StopTiming:
        """Hypercorn's CLI: the runs must be aborted before its --graceful-timeout ends."""
        effective = max(0.0, min(grace, graceful_timeout - GOODBYE_MARGIN))
        return cls(effective, graceful_timeout + 0.5, graceful_timeout + 1.5)

    @classmethod
    def orphaned(cls) -> StopTiming:
        """The parent died: nobody will wait for this process; be gone within a second."""
        return cls(0.2, 0.6, 0.9)


@dataclass(slots=True, eq=False)
class Lifecycle:
    """Whether the app is ready, and its shutdown. ``stop`` is the procedure's steps 2 and 3
    (given by the app: it knows its runs and connections)."""

    stop: Callable[[float], Awaitable[None]]
    timing: StopTiming
    ready: bool = False
    stopping: trio.Event = field(default_factory=trio.Event)
    listen_ports: set[int] = field(default_factory=set)
    exit_hooks: list[Callable[[], None]] = field(default_factory=list)
    hypercorn: HypercornWorker | None = None
    _scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch for the beginnings of a shutdown that come from outside, then run it, until
        ``close`` (the app's lifespan ends: every connection is gone)."""
        with self._scope:
            async with trio.open_nursery() as nursery:
                if self.hypercorn is not None:
                    nursery.start_soon(self._watch_hypercorn, self.hypercorn)
                parent = multiprocessing.parent_process()
                if parent is not None:
                    nursery.start_soon(self._watch_parent, parent.sentinel)
                task_status.started()
                await self.stopping.wait()
                await self._stop()

    def close(self) -> None:
        """The server has stopped serving: the watchers and the procedure are done."""
        self.ready = False
        self._scope.cancel()

    def begin_shutdown(self, reason: str, timing: StopTiming | None = None) -> None:
        """Begin the shutdown (idempotent): Hypercorn stops accepting, the procedure runs."""
        if self.stopping.is_set():
            return
        logger.info("%s: shutting down", reason)
        if timing is not None:
            self.timing = timing
        self.ready = False
        if self.hypercorn is not None:
            self.hypercorn.request_shutdown()
        self.stopping.set()

    async def _stop(self) -> None:
        timing = self.timing
        began = trio.current_time()
        await self.stop(timing.grace)
        await trio.sleep_until(began + timing.break_after)
        broken = break_connections(self.listen_ports)
        if broken:
            logger.warning("broke %d connection(s) still open after the shutdown", broken)
        await trio.sleep_until(began + timing.exit_after)
        logger.warning("still running %g s after the shutdown began; exiting", timing.exit_after)
        self.hard_exit()

    def hard_exit(self) -> None:
        for hook in self.exit_hooks:
            try:
                hook()
            except Exception:
                logger.exception("exit hook failed")
        logging.shutdown()
        sys.stderr.flush()
        os._exit(0)

    async def _watch_hypercorn(self, worker: HypercornWorker) -> None:
        while not worker.shutting_down():  # noqa: ASYNC110 (a multiprocessing event: polled)
            await trio.sleep(EVENT_POLL)
        self.begin_shutdown("Hypercorn is stopping")

    async def _watch_parent(self, sentinel: int) -> None:
        await trio.lowlevel.wait_readable(sentinel)
        self.begin_shutdown("the parent process is gone", StopTiming.orphaned())


class Background:
    """Background work of the app's lifespan (pruning stored responses, ...): started in the
    app's nursery with ``serve``, stopped at once by ``close`` when serving ends."""

    def __init__(self) -> None:
        self._scopes: list[trio.CancelScope] = []
        self._closed = False

    async def serve(
        self,
        work: Callable[..., Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``work(task_status=...)`` until ``close``."""
        scope = trio.CancelScope()
        if self._closed:
            scope.cancel()
        self._scopes.append(scope)
        with scope:
            await work(task_status=task_status)

    def close(self) -> None:
        self._closed = True
        for scope in self._scopes:
            scope.cancel()
