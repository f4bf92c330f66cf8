"""The stored-responses seam (``POST /v1/responses`` with ``store`` true): what a response store
keeps and promises. The embedded implementation is SQLite (``gateway.sessions.sqlite_responses``);
others (PostgreSQL) keep the same promises, shared by every process that serves the sessions.

A stored response is the response object as the client got it, its own input items (not its
ancestors'), the agent and session it ran on, and when it expires. Items are found by id for
``item_reference`` (the newest item with that id wins: a client may send one item again).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.types import JSONObject

Order = Literal["asc", "desc"]
# How far back a chain of previous responses is followed.
MAX_CHAIN = 10_000


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    created_at: int  # Unix seconds
    agent_id: str
    session_key: str | None
    previous_response_id: str | None
    response: JSONObject
    input_items: Sequence[JSONObject]


@dataclass(frozen=True, slots=True)
class ItemsPage:
    items: Sequence[JSONObject]
    has_more: bool


class ResponseStore(Protocol):
    async def put(self, stored: StoredResponse, expires_at: int) -> None:
        """Store (or replace) a response durably; returns once it is committed."""
        ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def chain(self, response_id: str) -> list[StoredResponse] | None:
        """``response_id`` and its ancestors, oldest first (at most ``MAX_CHAIN``, stopping at
        an ancestor that is gone); ``None`` if ``response_id`` itself is not stored."""
        ...

    async def find_items(self, item_ids: Collection[str]) -> dict[str, JSONObject]:
        """Stored input or output items by id (ids not found are left out)."""
        ...

    async def input_items(
        self, response_id: str, limit: int, after: str | None, order: Order
    ) -> ItemsPage | None:
        """A page of a response's input items; ``None`` if the response is not stored.
        ``ValueError`` when ``after`` names no input item of it."""
        ...

    async def delete(self, response_id: str) -> bool: ...

    async def prune(self, now: int) -> int:
        """Delete the responses expired at ``now``; returns how many."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
