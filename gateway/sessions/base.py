"""The session store seam. The embedded implementation is SQLite; others must keep these promises.

A store is shared by every worker process that uses the same state directory, so everything that
must hold across processes (transcripts, session lanes, the concurrency cap, kill requests) lives
here and not in process memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

import trio

from gateway.types import ChatMessage, UsageDict

TurnStatus = Literal["complete", "aborted", "error"]


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One stored message. ``status`` is that of the run that wrote it."""

    seq: int
    message: ChatMessage
    run_id: str
    status: TurnStatus
    created_at_ms: int
    usage: UsageDict | None = None


@dataclass(frozen=True, slots=True)
class HistoryPage:
    entries: Sequence[TranscriptEntry]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class RecentMessages:
    """The newest messages of a transcript (oldest first) and how many it holds in all."""

    entries: Sequence[TranscriptEntry]
    total: int


@dataclass(frozen=True, slots=True)
class SessionInfo:
    key: str
    agent_id: str
    created_at_ms: int
    updated_at_ms: int
    message_count: int


class LaneHandle(Protocol):
    """What ``SessionStore.lane`` yields. The block runs inside ``cancel_scope``; a kill request
    for the key sets ``killed`` and cancels it (the scope absorbs that ``Cancelled``)."""

    @property
    def key(self) -> str | None: ...

    @property
    def killed(self) -> bool: ...

    @property
    def cancel_scope(self) -> trio.CancelScope: ...


class SessionStore(Protocol):
    async def context(self, key: str, limit: int | None) -> list[ChatMessage]:
        """The stored conversation to send the model: the newest ``limit`` messages (all when
        ``None``), never starting between an assistant ``tool_calls`` message and its tool
        results."""
        ...

    async def append_turn(
        self,
        key: str,
        agent_id: str,
        run_id: str,
        messages: Sequence[ChatMessage],
        status: TurnStatus,
        usage: UsageDict | None = None,
    ) -> None:
        """Durably append one turn (the new user/tool messages then the reply, if any) in one
        transaction. Returns only once it is committed. Shielded callers may call this during
        cancellation."""
        ...

    async def history(self, key: str, limit: int, cursor: str | None) -> HistoryPage | None:
        """A page of the transcript, oldest first; ``None`` if the session does not exist.
        ``ValueError`` for a cursor the store did not make."""
        ...

    async def recent(self, key: str, limit: int) -> RecentMessages | None:
        """The newest ``limit`` messages, oldest first; ``None`` if the session does not exist.
        Reads only those messages, however long the transcript."""
        ...

    async def list_sessions(self, agent_id: str | None, limit: int) -> list[SessionInfo]: ...

    async def delete(self, key: str) -> bool: ...

    async def reset(self, key: str) -> bool: ...

    def lane(self, key: str | None) -> AbstractAsyncContextManager[LaneHandle]:
        """Wait for the session lane of ``key`` (FIFO, one run at a time per key, across
        processes; ``None`` for a stateless run: no session lane), then for one of the
        ``maxConcurrent`` run slots (FIFO). Cancelling the waiter removes it from the queue;
        leaving the block releases both."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers (readiness probes); never raises."""
        ...

    async def request_kill(self, key: str) -> bool:
        """Abort the active run on ``key`` (in any process); returns whether there was one."""
        ...

    async def serve(self, *, task_status: trio.TaskStatus[None] = ...) -> None:
        """The store's background work (for the app's lifespan nursery); runs until cancelled
        or ``aclose``d and reports readiness through ``task_status``."""
        ...

    async def aclose(self) -> None: ...
