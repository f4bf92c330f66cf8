"""The transcript store seam. The embedded implementation is SQLite; others must keep these
promises.

A store is shared by every process that serves the same sessions (the workers on one state
directory, or several hosts on one database), so transcripts live here and not in process
memory. Which runs may run (session lanes, the concurrency cap, kills) is admission's
(``gateway.sessions.admission``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.types import ChatMessage, UsageDict

TurnStatus = Literal["complete", "aborted", "error"]


@dataclass(frozen=True, slots=True)
class TranscriptMark:
    """A place in a transcript: right after message ``seq``, which run ``run_id`` wrote (``seq``
    0, ``run_id`` ``""``: before the first message). A follower continues from a mark; the same
    ``seq`` with another run is a transcript that was reset since."""

    seq: int
    run_id: str


START = TranscriptMark(0, "")


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One stored message. ``status`` is that of the run that wrote it; ``channel`` the message
    channel (a client's label for where the turn came from) its run was given, if any."""

    seq: int
    message: ChatMessage
    run_id: str
    status: TurnStatus
    created_at_ms: int
    usage: UsageDict | None = None
    channel: str | None = None

    @property
    def mark(self) -> TranscriptMark:
        """The place right after this message."""
        return TranscriptMark(self.seq, self.run_id)


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of a transcript, and where the whole transcript ended (``end``) when the page was
    read: a follower of the session continues from there."""

    entries: Sequence[TranscriptEntry]
    next_cursor: str | None
    end: TranscriptMark


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


class TranscriptStore(Protocol):
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
        channel: str | None = None,
    ) -> None:
        """Durably append one turn (the new user/tool messages then the reply, if any) in one
        transaction, every message carrying ``channel``. Returns only once it is committed;
        then followers of the session (``wait_appended``) are woken. Shielded callers may call
        this during cancellation."""
        ...

    async def history(self, key: str, limit: int, cursor: str | None) -> HistoryPage | None:
        """A page of the transcript, oldest first; ``None`` if the session does not exist.
        ``ValueError`` for a cursor the store did not make."""
        ...

    async def wait_appended(
        self, key: str, after: TranscriptMark, limit: int
    ) -> Sequence[TranscriptEntry] | None:
        """The messages after ``after`` (at most ``limit``, oldest first, never empty) as soon
        as there are any: at once when there already are, else when one is appended, waiting
        as long as it takes (the caller's cancel scope bounds the wait). ``None`` when the
        session no longer continues from ``after`` (deleted, or reset since): the follower
        stops there. Appends through this store object wake waiters at once; appends by other
        processes or hosts within the store's poll interval, or at their notification.
        Cancellable at any point; a cancelled waiter leaves nothing registered."""
        ...

    async def recent(self, key: str, limit: int) -> RecentMessages | None:
        """The newest ``limit`` messages, oldest first; ``None`` if the session does not exist.
        Reads only those messages, however long the transcript."""
        ...

    @property
    def location(self) -> str:
        """Where the transcripts are kept, for people (health reports show it): a file path."""
        ...

    async def list_sessions(self, agent_id: str | None, limit: int) -> list[SessionInfo]:
        """Sessions (of ``agent_id``, or all), most recently updated first, at most ``limit``."""
        ...

    async def count_sessions(self, agent_id: str | None) -> int:
        """How many sessions there are (of ``agent_id``, or all)."""
        ...

    async def delete(self, key: str) -> bool: ...

    async def reset(self, key: str) -> bool: ...

    async def ping(self) -> bool:
        """Whether the store answers (readiness probes); never raises."""
        ...

    async def aclose(self) -> None: ...
