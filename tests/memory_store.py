"""An in-process session store for tests that do not exercise persistence."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from gateway.sessions.base import HistoryPage, RecentMessages, SessionInfo, TurnStatus
from gateway.types import ChatMessage, UsageDict


@dataclass(eq=False)
class Lane:
    key: str | None
    killed: bool = False
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)


class MemoryStore:
    def __init__(self, max_concurrent: int = 4) -> None:
        self.turns: dict[str, list[tuple[list[ChatMessage], TurnStatus]]] = defaultdict(list)
        self._locks: dict[str, trio.Lock] = defaultdict(trio.Lock)
        self._slots = trio.CapacityLimiter(max_concurrent)
        self.appended = trio.Event()
        self._lanes: set[Lane] = set()
        self.healthy = True

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

    async def delete(self, key: str) -> bool:
        return self.turns.pop(key, None) is not None

    async def reset(self, key: str) -> bool:
        return self.turns.pop(key, None) is not None

    @asynccontextmanager
    async def lane(self, key: str | None) -> AsyncIterator[Lane]:
        lane = Lane(key)
        self._lanes.add(lane)
        try:
            if key is None:
                async with self._slots:
                    with lane.cancel_scope:
                        yield lane
                return
            async with self._locks[key], self._slots:
                with lane.cancel_scope:
                    yield lane
        finally:
            self._lanes.discard(lane)

    async def ping(self) -> bool:
        return self.healthy

    async def request_kill(self, key: str) -> bool:
        found = False
        for lane in self._lanes:
            if lane.key == key:
                lane.killed = True
                lane.cancel_scope.cancel()
                found = True
        return found

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def aclose(self) -> None:
        return None
