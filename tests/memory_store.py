"""An in-process transcript store for tests that do not exercise persistence."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import trio

from gateway.sessions.base import HistoryPage, RecentMessages, SessionInfo, TurnStatus
from gateway.types import ChatMessage, UsageDict


class MemoryStore:
    def __init__(self) -> None:
        self.turns: dict[str, list[tuple[list[ChatMessage], TurnStatus]]] = defaultdict(list)
        self.appended = trio.Event()
        self.healthy = True
        self.location = "memory"

    async def context(self, key: str, limit: int | None) -> list[ChatMessage]:
        messages = [m for turn, _ in self.turns.get(key, []) for m in turn]
        return messages[-limit:] if limit else messages

    async def append_turn(
        self,
        key: str,
        agent_id: str,
        run_id: str,
        messages: Sequence[ChatMessage],
        status: TurnStatus,
        usage: UsageDict | None = None,
    ) -> None:
        self.turns[key].append((list(messages), status))
        self.appended.set()

    async def history(self, key: str, limit: int, cursor: str | None) -> HistoryPage | None:
        return None

    async def recent(self, key: str, limit: int) -> RecentMessages | None:
        return None

    async def list_sessions(self, agent_id: str | None, limit: int) -> list[SessionInfo]:
        return []

    async def count_sessions(self, agent_id: str | None) -> int:
        return 0

    async def delete(self, key: str) -> bool:
        return self.turns.pop(key, None) is not None

    async def reset(self, key: str) -> bool:
        return self.turns.pop(key, None) is not None

    async def ping(self) -> bool:
        return self.healthy

    async def aclose(self) -> None:
        return None
