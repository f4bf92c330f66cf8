"""The admission of a process on a state directory: in-process when it is alone there, shared
through SQLite when other processes use the same directory.

Alone or not is decided once, in ``serve``, with a lock file, ``<state>/gateway/admission.lock``:

- a process that knows it has siblings (``gateway serve --workers N``, ``hypercorn -w N``,
  ``gateway.store.shared: true``) takes a shared ``flock`` on it and uses ``SharedAdmission``;
- any other process tries an exclusive ``flock``: granted, it is alone, and admits in process
  (``LocalAdmission``: no I/O per run); refused (another gateway uses the directory), it takes the
  shared lock and ``SharedAdmission`` like the others;
- a shared lock is refused while a lone process holds the exclusive one: the newcomer waits for
  it to stop (a restart overlapping the old process's shutdown), saying so in the log, for at
  most ``LONE_WAIT`` seconds; then it refuses to start, naming that process.

So processes that admit in process never share a directory with others, and the lanes and the
cap hold whichever processes are started, in whichever order. The kernel drops a dead process's
lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio

from gateway.errors import CannotStart
from gateway.sessions.admission import Admission, AdmissionStatistics, LocalAdmission, OnKill
from gateway.sessions.shared_admission import SharedAdmission

__all__ = ["StateAdmission"]

logger = logging.getLogger("gateway.sessions")

_LOCK_POLL = 0.1
# How long a newcomer waits for a process that admits alone on the directory to stop.
LONE_WAIT = 15.0


class StateDirectoryBusy(CannotStart):
    """Another gateway process serves the state directory alone (in-process admission)."""


class StateAdmission:
    """An ``Admission`` deciding between local and shared in ``serve`` (see the module
    docstring); until then, ``admit`` raises ``RuntimeError``."""

    def __init__(self, directory: Path, *, max_concurrent: int, shared: bool) -> None:
        self.directory = directory
        self.max_concurrent = max_concurrent
        self._want_shared = shared
        self._inner: Admission | None = None
        self._fd: int | None = None

    @property
    def shared(self) -> bool:
        return self._inner is not None and self._inner.shared

    @property
    def inner(self) -> Admission | None:
        """The admission chosen by ``serve`` (``None`` before)."""
        return self._inner

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "admission.lock"
        fd = self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        inner: Admission
        if not self._want_shared and _try_lock(fd, fcntl.LOCK_EX):
            # Say who holds the directory, for a newcomer's message.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            inner = LocalAdmission(self.max_concurrent)
        else:
            if not self._want_shared:
                logger.info("another gateway process uses %s: admission is shared", self.directory)
            if not _try_lock(fd, fcntl.LOCK_SH):
                await self._wait_for_the_lone_process(fd)
            inner = SharedAdmission(self.directory, max_concurrent=self.max_concurrent)
        self._inner = inner
        await inner.serve(task_status=task_status)

    async def _wait_for_the_lone_process(self, fd: int) -> None:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        advice = (
            "several independently started gateway processes on one state directory need "
            "gateway.store.shared: true"
        )
        logger.warning(
            "waiting for the gateway process %s that serves %s alone to stop (%s)",
            holder, self.directory, advice,
        )  # fmt: skip
        with trio.move_on_after(LONE_WAIT):
            # Another process's file lock: nothing to wait on but the lock itself.
            while not _try_lock(fd, fcntl.LOCK_SH):  # noqa: ASYNC110
                await trio.sleep(_LOCK_POLL)
            return
        raise StateDirectoryBusy(
            f"gateway process {holder} serves {self.directory} alone; stop it first ({advice})"
        )

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None

    def admit(self, key: str | None, on_kill: OnKill) -> AbstractAsyncContextManager[None]:
        if self._inner is None:
            raise RuntimeError("the admission's serve() task is not running")
        return self._inner.admit(key, on_kill)

    async def request_kill(self, key: str) -> bool:
        return self._inner is not None and await self._inner.request_kill(key)

    def statistics(self) -> AdmissionStatistics:
        if self._inner is None:
            return AdmissionStatistics(self.max_concurrent, 0, 0, 0, 0, ())
        return self._inner.statistics()

    async def ping(self) -> bool:
        return self._inner is not None and await self._inner.ping()


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
