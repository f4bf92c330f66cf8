"""PostgreSQL from trio: psycopg 3 connections, each owned by a dedicated thread.

psycopg's asynchronous API is asyncio's; its blocking API is complete and safe in threads. So a
``PgDatabase`` keeps ``size`` threads, each with one connection, taking jobs from one queue: a job
is a function run with the connection inside a transaction (``run``), or in autocommit mode
(``run(..., transaction=False)``). Measured on this kind of machine (``bench/pg_driver.py``), a
job costs one thread hop on top of the query's round trip.

Failures: a connection that breaks (the server restarted, the network dropped it) is replaced on
the thread's next job; a job that cannot run (no connection within ``connect_timeout``, a query
past ``statement_timeout``, the server gone) raises ``StoreUnavailable`` (503, ``Retry-After``),
never a stack trace for the client. A job not started by its deadline is dropped, not run late.
Connections set TCP keepalives (both ways: libpq's client side and the server's
``tcp_keepalives_*`` / ``tcp_user_timeout`` for this session), so a vanished peer is noticed in
seconds and the session's advisory locks are released.

Cancellation: a caller cancelled while its job waits in the queue takes it out; once the job has
started, the caller waits for it to finish (a transaction is never left half-known).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import outcome
import psycopg
import trio

from gateway.errors import GatewayError
from gateway.sessions.postgres.url import redact

T = TypeVar("T")
logger = logging.getLogger("gateway.sessions")

CONNECT_TIMEOUT = 5
STATEMENT_TIMEOUT_MS = 10_000
# A job that has not started within this long is answered 503 (the whole request within 15 s).
JOB_DEADLINE = 12.0
RETRY_AFTER = 2.0
# Client-side libpq keepalives and the server's view of this session: a peer that vanished is
# dropped after about 3 + 3 x 1 s of silence (or 5 s of unacknowledged data).
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 3,
    "keepalives_interval": 1,
    "keepalives_count": 3,
}
SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 3",
    "SET tcp_keepalives_interval = 1",
    "SET tcp_keepalives_count = 3",
    "SET tcp_user_timeout = 5000",
    f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}",
)


class StoreUnavailable(GatewayError):
    """The database did not answer: 503 with ``Retry-After``."""

    status = 503
    type = "server_error"

    def __init__(self, detail: str) -> None:
        super().__init__(
            "The session store is unavailable; try again shortly.",
            code="store_unavailable",
            retry_after=RETRY_AFTER,
        )
        self.detail = detail


def connect(
    url: str, application_name: str, *, autocommit: bool = False
) -> psycopg.Connection[Any]:
    """One connection with the gateway's settings (blocking: call it from a thread)."""
    connection = psycopg.connect(
        url,
        autocommit=autocommit,
        connect_timeout=CONNECT_TIMEOUT,
        application_name=application_name,
        **KEEPALIVES,  # type: ignore[arg-type]
    )
    try:
        with connection.cursor() as cursor:
            for statement in SESSION_SETTINGS:
                cursor.execute(statement)
        if not autocommit:
            connection.commit()
    except BaseException:
        connection.close()
        raise
    return connection


@dataclass(slots=True, eq=False)
class _Job:
    fn: Callable[[psycopg.Connection[Any]], Any]
    transaction: bool
    deadline: float
    task: trio.lowlevel.Task
    state: str = "queued"  # queued → started → done, or cancelled
    result: outcome.Outcome[Any] | None = None


class PgDatabase:
    """``size`` connections to ``url``, each in its own thread (see the module docstring)."""

    def __init__(self, url: str, *, size: int = 4, name: str = "gateway") -> None:
        self.url = url
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start the threads (connections open on first use); idempotent."""
        if self._threads:
            return
        self._token = trio.lowlevel.current_trio_token()
        for n in range(self._size):
            thread = threading.Thread(
                target=self._serve, name=f"postgres {self._name} {n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    async def run(
        self, fn: Callable[[psycopg.Connection[Any]], T], *, transaction: bool = True
    ) -> T:
        """``fn(connection)`` in a transaction (committed when it returns) or, without
        ``transaction``, in autocommit mode. Raises what ``fn`` raises, or ``StoreUnavailable``."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed:
            raise StoreUnavailable("closed")
        self.start()
        job = _Job(fn, transaction, time.monotonic() + JOB_DEADLINE, trio.lowlevel.current_task())
        self._jobs.put(job)

        def abort(_: Any) -> trio.lowlevel.Abort:
            with self._lock:
                if job.state == "queued":
                    job.state = "cancelled"
                    return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED

        return cast(T, await trio.lowlevel.wait_task_rescheduled(abort))

    async def aclose(self) -> None:
        """Stop the threads after the jobs already queued; idempotent, shielded."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        with trio.CancelScope(shield=True):
            for thread in self._threads:
                await trio.to_thread.run_sync(thread.join)

    def _serve(self) -> None:
        connection: psycopg.Connection[Any] | None = None
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                with self._lock:
                    if job.state == "cancelled":
                        continue
                    job.state = "started"
                if time.monotonic() > job.deadline:
                    job.result = outcome.Error(StoreUnavailable("queued past the deadline"))
                else:
                    connection, job.result = self._attempt(connection, job)
                assert self._token is not None
                try:
                    self._token.run_sync_soon(trio.lowlevel.reschedule, job.task, job.result)
                except trio.RunFinishedError:
                    return
        finally:
            if connection is not None:
                connection.close()

    def _attempt(
        self, connection: psycopg.Connection[Any] | None, job: _Job
    ) -> tuple[psycopg.Connection[Any] | None, outcome.Outcome[Any]]:
        """Run ``job`` (connecting first if needed); returns the connection to keep."""
        for attempt in range(2):
            fresh = connection is None
            try:
                if connection is None:
                    connection = connect(self.url, self._name)
                connection.autocommit = not job.transaction
                if job.transaction:
                    with connection.transaction():
                        value = job.fn(connection)
                else:
                    value = job.fn(connection)
                return connection, outcome.Value(value)
            except psycopg.OperationalError as error:
                # The connection is gone (or never came): drop it. A pooled connection that
                # broke while idle is retried once on a new one; a new one is not.
                if connection is not None:
                    connection.close()
                connection = None
                if fresh or attempt == 1 or _is_timeout(error):
                    logger.warning("database unavailable: %s", redact(str(error), self.url))
                    return None, outcome.Error(StoreUnavailable(str(error)))
            except BaseException as error:
                if connection is not None and connection.broken:
                    connection.close()
                    connection = None
                return connection, outcome.Error(error)
        return connection, outcome.Error(StoreUnavailable("no connection"))


def _is_timeout(error: psycopg.OperationalError) -> bool:
    return isinstance(error, psycopg.errors.QueryCanceled)
