"""The durable session store: SQLite files under ``<state dir>/gateway/``.

Files:
- ``sessions.sqlite3``: transcripts, WAL, ``synchronous=FULL``: a turn acknowledged by
  ``append_turn`` survives SIGKILL and power loss.
- ``lanes.sqlite3``: lane tickets and kill requests, WAL, ``synchronous=NORMAL`` (see ``lanes``).
- ``owners/<token>.lock``: one per open store, the liveness signal of its lane tickets.

Every process (Hypercorn worker) opens its own store on the same directory; they share nothing
else. Each must run ``serve`` (in the app's lifespan nursery) for its lanes to work:

    store = SQLiteSessionStore.from_settings(settings)
    await nursery.start(store.serve)   # before serving
    ...
    await store.aclose()               # after serving; stops serve

What the transcript keeps and what ``context`` sends the model:
- every turn is stored with its status; ``history`` shows everything;
- ``context`` leaves out ``error`` turns entirely (the client got an error and will retry; the
  retry carries the same new messages), keeps ``aborted`` turns (the user saw that partial
  reply) minus their assistant ``tool_calls`` (cut off, never answered) and minus an assistant
  reply left empty;
- ``reset`` deletes the messages and keeps the session row (agent, creation time), so the
  session still lists with 0 messages; it invalidates earlier history cursors.
Neither ``reset`` nor ``delete`` waits for the session lane: take ``lane(key)`` around them to
order them with runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path

import trio

from gateway.sessions import _tickets, _transcripts
from gateway.sessions._db import Database
from gateway.sessions._owners import Owner
from gateway.sessions.base import HistoryPage, RecentMessages, SessionInfo, TurnStatus
from gateway.sessions.lanes import Lane, Lanes, LaneStatistics, LaneTicket
from gateway.settings import Settings
from gateway.types import ChatMessage, UsageDict

__all__ = ["SQLiteSessionStore"]

DEFAULT_POLL_INTERVAL = 0.015


class SQLiteSessionStore:
    """Transcripts, lanes and kill requests for every process sharing ``directory``.

    Constructing it does no I/O. The files are created on first use (or by ``serve``), so the
    transcript methods work without ``serve``; ``lane`` does not. Every process must pass the
    same ``max_concurrent``: it is one cap shared by all of them. ``poll_interval`` (seconds) is
    how often a process with waiters or running sessions looks for other processes' releases
    and kill requests.
    """

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
        self._transcripts = Database(directory / "sessions.sqlite3", synchronous="FULL")
        self._lanes_db = Database(directory / "lanes.sqlite3", synchronous="NORMAL")
        self._lanes: Lanes | None = None
        self._owner: Owner | None = None
        self._open_lock = trio.Lock()
        self._closed = False
        self._serve_scope: trio.CancelScope | None = None
        self._serve_done: trio.Event | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SQLiteSessionStore:
        return cls(settings.gateway_dir, max_concurrent=settings.agents.defaults.max_concurrent)

    async def open(self) -> None:
        """Create the directory and files if needed and claim this store's owner identity.
        Idempotent; the other methods call it. Safe to run in several processes at once."""
        if self._lanes is not None:
            return
        async with self._open_lock:
            if self._closed:
                raise RuntimeError("the session store is closed")
            if self._lanes is not None:
                return
            try:
                await self._transcripts.open(_transcripts.VERSION, _transcripts.SCHEMA)
                await self._lanes_db.open(_tickets.VERSION, _tickets.SCHEMA)
                owner = await trio.to_thread.run_sync(Owner.claim, self.directory / "owners")
            except BaseException:
                # Stop what did start; the next call starts over with fresh handles.
                with trio.CancelScope(shield=True):
                    await self._transcripts.aclose()
                    await self._lanes_db.aclose()
                self._transcripts = Database(self._transcripts.path, synchronous="FULL")
                self._lanes_db = Database(self._lanes_db.path, synchronous="NORMAL")
                raise
            self._owner = owner
            self._lanes = Lanes(
                self._lanes_db,
                owner,
                max_concurrent=self.max_concurrent,
                poll_interval=self._poll_interval,
            )

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the store, delete dead processes' lane tickets, report started, then watch for
        other processes' lane releases and kill requests until cancelled or ``aclose``d."""
        if self._serve_done is not None:
            raise RuntimeError("serve() was already started")
        self._serve_done = trio.Event()
        try:
            with trio.CancelScope() as self._serve_scope:
                await self.open()
                assert self._lanes is not None
                await self._lanes.serve(task_status=task_status)
        finally:
            self._serve_done.set()

    async def aclose(self) -> None:
        """Stop ``serve``, close the files and give up the owner identity. Call it once no run
        uses the store any more; idempotent. Shielded: completes even if cancelled."""
        with trio.CancelScope(shield=True):
            async with self._open_lock:
                self._closed = True
            if self._serve_scope is not None:
                self._serve_scope.cancel()
            if self._serve_done is not None:
                await self._serve_done.wait()
            await self._transcripts.aclose()
            await self._lanes_db.aclose()
            if self._owner is not None:
                await trio.to_thread.run_sync(self._owner.release)

    async def ping(self) -> bool:
        """Whether both databases answer a query (readiness probes)."""
        try:
            await self.open()
            await self._transcripts.read(_select_one)
            await self._lanes_db.read(_select_one)
        except (sqlite3.Error, OSError, RuntimeError):
            return False
        return True

    # Transcripts

    async def append_turn(
        self,
        key: str,
        agent_id: str,
        run_id: str,
        messages: Sequence[ChatMessage],
        status: TurnStatus,
        usage: UsageDict | None = None,
    ) -> None:
        """Durably append one turn in one transaction (creating the session on first use);
        returns once it is committed and fsynced. Cancellation is only honoured before the
        write is queued; after that the call waits for the commit. A cancelled run recording
        its turn must shield the call. An empty ``messages`` writes nothing."""
        if status not in _transcripts.STATUSES:
            raise ValueError(f"invalid turn status {status!r}")
        if not messages:
            return
        await self.open()
        append = partial(_transcripts.append, key, agent_id, run_id, messages, status, usage)
        await self._transcripts.write(append)

    async def context(self, key: str, limit: int | None) -> list[ChatMessage]:
        """The stored conversation for the model, oldest first: at most the newest ``limit``
        messages (all when ``None``), never starting with tool results whose assistant
        ``tool_calls`` message was cut off. See the module docstring for which turns count.
        An unknown key gives ``[]``."""
        if limit is not None and limit < 0:
            raise ValueError("limit must not be negative")
        await self.open()
        return await self._transcripts.read(partial(_transcripts.context, key, limit))

    async def history(self, key: str, limit: int, cursor: str | None) -> HistoryPage | None:
        """Up to ``limit`` messages oldest first, after ``cursor`` (from a previous page's
        ``next_cursor``; ``None`` for the first page). ``None`` if the session does not exist.
        ``ValueError`` for a ``limit`` below 1 or a cursor this store did not make."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        _transcripts.decode_cursor(cursor)
        await self.open()
        return await self._transcripts.read(partial(_transcripts.history, key, limit, cursor))

    async def recent(self, key: str, limit: int) -> RecentMessages | None:
        await self.open()
        return await self._transcripts.read(partial(_transcripts.recent, key, limit))

    async def list_sessions(self, agent_id: str | None, limit: int) -> list[SessionInfo]:
        """Sessions (of ``agent_id``, or all), most recently updated first, with their counts."""
        await self.open()
        read = partial(_transcripts.list_sessions, agent_id, max(limit, 0))
        return await self._transcripts.read(read)

    async def reset(self, key: str) -> bool:
        """Delete the transcript and keep the session; returns whether the session exists."""
        await self.open()
        return await self._transcripts.write(partial(_transcripts.reset, key))

    async def delete(self, key: str) -> bool:
        """Delete the session and its transcript; returns whether it existed."""
        await self.open()
        return await self._transcripts.write(partial(_transcripts.delete, key))

    # Lanes and kills

    def lane(self, key: str | None) -> AbstractAsyncContextManager[Lane]:
        """Wait for the session lane of ``key`` (one run at a time per key, FIFO, across
        processes; ``None``: a stateless run, no session lane), then for one of the
        ``max_concurrent`` run slots (FIFO, across processes), and yield the ``Lane``.

        Cancelling a waiter removes it from both queues at once. Leaving the block releases
        both (shielded) and wakes the next waiter: at once in this process, within one poll
        interval in another. The body runs inside ``lane.cancel_scope``, which ``request_kill``
        cancels. ``RuntimeError`` if ``serve`` is not running.
        """
        if self._lanes is None:
            raise RuntimeError("the session store's serve() task is not running")
        return self._lanes.lane(key)

    async def request_kill(self, key: str) -> bool:
        """Abort the active run on ``key`` in whichever process runs it; returns whether one
        was active. In this process the run's scope is cancelled before this returns; in
        another, within about one poll interval (15 ms by default)."""
        await self.open()
        assert self._lanes is not None
        return await self._lanes.request_kill(key)

    def lane_statistics(self) -> LaneStatistics:
        """This process's held and waiting lanes, as a frozen value."""
        if self._lanes is None:
            return LaneStatistics(self.max_concurrent, 0, 0, 0, 0, ())
        return self._lanes.statistics()

    async def lane_tickets(self) -> list[LaneTicket]:
        """Every queued or held ticket of every process, oldest first (for tests, diagnostics)."""
        await self.open()
        assert self._lanes is not None
        return await self._lanes.tickets()


def _select_one(connection: sqlite3.Connection) -> object:
    return connection.execute("SELECT 1").fetchone()
