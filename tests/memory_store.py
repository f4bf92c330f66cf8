"""An in-process transcript store for tests that do not exercise persistence."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence

import trio

from gateway.sessions.base import (
    HistoryPage,
    RecentMessages,
    SessionInfo,
    TranscriptEntry,
    TranscriptMark,
    TurnStatus,
)
from gateway.sessions.responses import MAX_CHAIN, ItemsPage, Order, StoredResponse
from gateway.types import ChatMessage, JSONObject, UsageDict


class MemoryStore:
    def __init__(self) -> None:
        self.turns: dict[str, list[tuple[list[ChatMessage], TurnStatus]]] = defaultdict(list)
        self.channels: dict[str, list[str | None]] = defaultdict(list)  # per turn
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
        channel: str | None = None,
    ) -> None:
        self.turns[key].append((list(messages), status))
        self.channels[key].append(channel)
        self.appended.set()

    async def wait_appended(
        self, key: str, after: TranscriptMark, limit: int
    ) -> Sequence[TranscriptEntry] | None:
        return None  # ``history`` knows no session: nobody follows one

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


class MemoryResponses:
    """An in-process ``ResponseStore`` (the SQLite one has its own tests)."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[StoredResponse, int]] = {}
        self.healthy = True

    async def put(self, stored: StoredResponse, expires_at: int) -> None:
        self.stored[stored.id] = (stored, expires_at)

    async def get(self, response_id: str) -> StoredResponse | None:
        entry = self.stored.get(response_id)
        return entry[0] if entry else None

    async def chain(self, response_id: str) -> list[StoredResponse] | None:
        first = await self.get(response_id)
        if first is None:
            return None
        chain = [first]
        while chain[-1].previous_response_id is not None and len(chain) < MAX_CHAIN:
            parent = await self.get(chain[-1].previous_response_id)
            if parent is None:
                break
            chain.append(parent)
        return chain[::-1]

    async def find_items(self, item_ids: Collection[str]) -> dict[str, JSONObject]:
        found: dict[str, JSONObject] = {}
        for stored, _ in self.stored.values():
            for item in [*stored.input_items, *stored.response["output"]]:
                if item.get("id") in item_ids:
                    found[item["id"]] = item
        return found

    async def input_items(
        self, response_id: str, limit: int, after: str | None, order: Order
    ) -> ItemsPage | None:
        stored = await self.get(response_id)
        if stored is None:
            return None
        items = list(stored.input_items)
        if order == "desc":
            items.reverse()
        start = 0
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise ValueError(after)
            start = ids.index(after) + 1
        return ItemsPage(items[start : start + limit], start + limit < len(items))

    async def delete(self, response_id: str) -> bool:
        return self.stored.pop(response_id, None) is not None

    async def prune(self, now: int) -> int:
        expired = [key for key, (_, expires) in self.stored.items() if expires <= now]
        for key in expired:
            del self.stored[key]
        return len(expired)

    async def ping(self) -> bool:
        return self.healthy

    async def aclose(self) -> None:
        return None
