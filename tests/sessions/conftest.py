from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from gateway.sessions.lanes import LaneTicket
from gateway.sessions.sqlite import SQLiteSessionStore

StoreFactory = Callable[..., Awaitable[SQLiteSessionStore]]


@pytest.fixture
async def open_store(tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Open serving stores on ``tmp_path`` (several stand for several processes); all are
    closed at the end of the test."""
    stores: list[SQLiteSessionStore] = []
    async with trio.open_nursery() as nursery:

        async def factory(max_concurrent: int = 4) -> SQLiteSessionStore:
            store = SQLiteSessionStore(tmp_path, max_concurrent=max_concurrent)
            stores.append(store)
            await nursery.start(store.serve)
            return store

        yield factory
        for store in stores:
            await store.aclose()


@pytest.fixture
async def store(open_store: StoreFactory) -> SQLiteSessionStore:
    return await open_store()


async def wait_until(predicate: Callable[[], bool | Awaitable[bool]]) -> None:
    """Wait (5 s at most) for a condition made true outside this task's control: by the
    store's database thread or by another process. Polling is inherent there."""
    with trio.fail_after(5):
        while True:
            done = predicate()
            if not isinstance(done, bool):
                done = await done
            if done:
                return
            await trio.sleep(0.001)


async def wait_for_tickets(
    store: SQLiteSessionStore, predicate: Callable[[list[LaneTicket]], bool]
) -> None:
    """Wait until the lane tables (every process's tickets) satisfy ``predicate``."""

    async def check() -> bool:
        return predicate(await store.lane_tickets())

    await wait_until(check)
