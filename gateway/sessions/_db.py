"""SQLite from trio: one dedicated thread per database file, committing jobs in batches.

Why one thread and batches: on these machines a round trip to a worker thread costs 150-300 µs
of CPU, five to ten times the SQLite work of a lane operation. The thread takes every job queued
since its last batch and runs them in one transaction, each inside its own SAVEPOINT (a job that
raises rolls back alone), then commits once: under load, many runs share one thread hop and,
with ``synchronous=FULL``, one fsync (group commit). Results go back to trio in one callback,
which first runs each job's ``then`` hook in job order on the trio thread, so in-memory state
follows the transactions in the order they committed, whatever order the waiting tasks resume.

Across processes, SQLite's write lock serialises batches. A batch that finds the database busy
(another process writing, WAL recovery after a crash) is rolled back and run again whole after
a short pause (``retry_busy``).
"""

from __future__ import annotations

import queue
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import outcome
import trio

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL"]

# SQLite's own busy handler sleeps 1, 2, 5 ... 100 ms between tries: with four processes
# contending it put lane operations' p99 at 20-80 ms. We turn it off and retry ourselves, from
# 0.1 ms up to 5 ms with jitter (so contenders do not retry in lockstep), for up to 30 s.
_BUSY_DEADLINE = 30.0
_FIRST_PAUSE = 0.0001
_LONGEST_PAUSE = 0.005
_MAX_BATCH = 256


def _is_busy(error: sqlite3.OperationalError) -> bool:
    # The primary code is the low byte; extended codes (BUSY_RECOVERY ...) count too.
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(error) or "busy" in str(error)


def retry_busy(call: Callable[[], T]) -> T:
    """Run ``call`` (blocking) again while SQLite reports the database busy, up to 30 s."""
    deadline = time.monotonic() + _BUSY_DEADLINE
    pause = _FIRST_PAUSE
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _is_busy(error) or time.monotonic() > deadline:
                raise
        time.sleep(pause * random.uniform(0.5, 1.5))
        pause = min(pause * 2, _LONGEST_PAUSE)


@dataclass(slots=True, eq=False)
class _Job:
    fn: Callable[[sqlite3.Connection], object]
    write: bool
    then: Callable[[Any], None] | None
    task: trio.lowlevel.Task
    result: outcome.Outcome[object] | None = None


class Database:
    """One SQLite file in WAL mode, used from one trio run.

    ``synchronous="FULL"`` makes every commit durable across power loss (the WAL is fsynced at
    each commit); ``"NORMAL"`` survives the death of any process but may lose the last commits
    on power loss, and does not fsync per commit.

    A call is cancellable until its job is queued; after that it waits for the commit (or
    rollback), like ``trio.to_thread.run_sync``: a write is never half-applied or left unknown.
    """

    def __init__(self, path: Path, *, synchronous: Synchronous) -> None:
        self.path = path
        self._synchronous = synchronous
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._closed = False

    async def open(
        self,
        version: int,
        schema: Iterable[str],
        migrations: Mapping[int, Sequence[str]] | None = None,
    ) -> None:
        """Create the directory and the file if needed, switch to WAL, start the thread, then
        create ``schema`` (the tables of ``version``) in a new file, or bring an older file up
        to ``version`` with ``migrations`` (for each later version, the statements that make it
        from the one before). Safe when several processes open the same file at once: the first
        to take the write lock creates or upgrades it, in one transaction, and the others then
        find it done. ``RuntimeError`` if a newer schema version made the file, or a step is
        missing."""
        connection = await trio.to_thread.run_sync(self._connect)
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.Thread(
            target=self._serve, args=(connection,), name=f"sqlite {self.path.name}", daemon=True
        )
        self._thread.start()
        steps = dict(migrations or {})
        await self.write(partial(_create, version, tuple(schema), steps))

    async def read(
        self, fn: Callable[[sqlite3.Connection], T], then: Callable[[T], None] | None = None
    ) -> T:
        """Run ``fn`` on a consistent snapshot and return its result. ``then(result)`` runs on
        the trio thread, in commit order with other jobs' hooks, before this returns."""
        return await self._submit(fn, False, then)

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], then: Callable[[T], None] | None = None
    ) -> T:
        """Run ``fn`` in a write transaction; returns once it is committed (and, with
        ``synchronous="FULL"``, on disk). ``then`` as for ``read``."""
        return await self._submit(fn, True, then)

    async def aclose(self) -> None:
        """Finish the queued jobs, stop the thread and close the file; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._jobs.put(None)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._thread.join)

    async def _submit(
        self, fn: Callable[[sqlite3.Connection], T], write: bool, then: Callable[[T], None] | None
    ) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed or self._thread is None:
            raise RuntimeError(f"{self.path} is {'closed' if self._closed else 'not open'}")
        self._jobs.put(_Job(fn, write, then, trio.lowlevel.current_task()))
        # Not abortable: once queued, the job will run; wait for its outcome.
        result = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return cast(T, result)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=0
        )
        try:
            # Even these can find the file busy while another process creates it.
            retry_busy(partial(self._configure, connection))
        except BaseException:
            connection.close()
            raise
        return connection

    def _configure(self, connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA busy_timeout = 0")  # retry_busy does the waiting
        connection.execute(f"PRAGMA synchronous = {self._synchronous}")
        # Persistent in the file; needs a moment of exclusive access the first time only.
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise RuntimeError(f"{self.path}: could not switch to WAL mode (got {mode!r})")

    def _serve(self, connection: sqlite3.Connection) -> None:
        """The thread: run batches until the stop marker, then close the connection."""
        try:
            stopping = False
            while not stopping:
                first = self._jobs.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < _MAX_BATCH:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        stopping = True
                        break
                    batch.append(job)
                _run_batch(connection, batch)
                assert self._token is not None
                try:
                    self._token.run_sync_soon(_deliver, batch)
                except trio.RunFinishedError:
                    return
        finally:
            connection.close()


def _run_batch(connection: sqlite3.Connection, batch: list[_Job]) -> None:
    write = any(job.write for job in batch)

    def attempt() -> None:
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            if len(batch) == 1:  # no savepoint needed: the transaction is the job's
                if _run_job(connection, batch[0], "ROLLBACK"):
                    connection.execute("COMMIT")
                return
            for job in batch:
                connection.execute("SAVEPOINT job")
                _run_job(connection, job, "ROLLBACK TO job")
                connection.execute("RELEASE job")
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    try:
        retry_busy(attempt)
    except Exception as error:  # BEGIN or COMMIT failed for good: so did every job
        for job in batch:
            job.result = outcome.Error(error)


def _run_job(connection: sqlite3.Connection, job: _Job, undo: str) -> bool:
    """Run one job and keep its outcome; if it fails, ``undo`` what it did (its savepoint, or
    the transaction of a batch of one). Returns whether it succeeded. A busy database is
    raised: the whole batch is rolled back and tried again."""
    try:
        value = job.fn(connection)
    except sqlite3.OperationalError as error:
        if _is_busy(error):
            raise
        connection.execute(undo)
        job.result = outcome.Error(error)
        return False
    except BaseException as error:  # delivered to its caller, as to_thread does
        connection.execute(undo)
        job.result = outcome.Error(error)
        return False
    job.result = outcome.Value(value)
    return True


def _deliver(batch: list[_Job]) -> None:
    """On the trio thread: run the hooks in job order, then wake the waiting tasks."""
    for job in batch:
        assert job.result is not None
        if job.then is not None and isinstance(job.result, outcome.Value):
            try:
                job.then(job.result.value)
            except Exception as error:
                job.result = outcome.Error(error)
        trio.lowlevel.reschedule(job.task, job.result)


def _create(
    version: int,
    schema: tuple[str, ...],
    migrations: dict[int, Sequence[str]],
    connection: sqlite3.Connection,
) -> None:
    """In the write transaction that holds the file's write lock (see ``Database.open``)."""
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    found = row[0] if row else None
    if found is None:
        for statement in schema:
            connection.execute(statement)
        connection.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
    elif found > version:
        raise RuntimeError(
            f"schema version {found} is newer than this gateway understands ({version})"
        )
    else:
        for step in range(found + 1, version + 1):
            if step not in migrations:
                raise RuntimeError(f"no migration from schema version {step - 1} to {step}")
            for statement in migrations[step]:
                connection.execute(statement)
            connection.execute("INSERT INTO schema_version (version) VALUES (?)", (step,))
