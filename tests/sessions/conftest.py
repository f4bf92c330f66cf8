from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from gateway.sessions.admission import Admission
from gateway.sessions.lanes import LaneTicket
from gateway.sessions.shared_admission import SharedAdmission
from gateway.sessions.sqlite import SQLiteTranscripts
from tests.sessions.backends import NAMES, Backend

SharedFactory = Callable[..., Awaitable[SharedAdmission]]


class Holder:
    """A run as admission sees it: ``kill`` (its ``on_kill``) notes the kill and cancels it."""

    def __init__(self) -> None:
        self.killed = False
        self.scope = trio.CancelScope()

    def kill(self) -> None:
        self.killed = True
        self.scope.cancel()


@asynccontextmanager
async def held_lane(admission: Admission, key: str | None) -> AsyncIterator[Holder]:
    """Hold ``key``'s lane and a slot, as a run does; a kill cancels the block (like a run's
    own scope, this absorbs that cancellation: the block then ends normally, ``killed``)."""
    holder = Holder()
    with holder.scope:
        async with admission.admit(key, holder.kill):
            yield holder


@pytest.fixture
async def open_shared(tmp_path: Path) -> AsyncIterator[SharedFactory]:
    """Open serving shared admissions on ``tmp_path`` (several stand for several processes);
    all are closed at the end of the test."""
    admissions: list[SharedAdmission] = []
    async with trio.open_nursery() as nursery:

        async def factory(max_concurrent: int = 4) -> SharedAdmission:
            admission = SharedAdmission(tmp_path, max_concurrent=max_concurrent)
            admissions.append(admission)
            await nursery.start(admission.serve)
            return admission

        yield factory
        for admission in admissions:
            await admission.aclose()


@pytest.fixture
async def store(open_shared: SharedFactory) -> SharedAdmission:
    """One serving shared admission (the lanes tests' store)."""
    return await open_shared()


@pytest.fixture(params=NAMES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each store implementation in turn (the contract tests): SQLite in ``tmp_path``, then
    PostgreSQL in a fresh database (skipped without PostgreSQL)."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    return Backend(request.param, tmp_path, url)


@pytest.fixture
async def transcripts(tmp_path: Path) -> AsyncIterator[SQLiteTranscripts]:
    store = SQLiteTranscripts(tmp_path)
    yield store
    await store.aclose()


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
    admission: SharedAdmission, predicate: Callable[[list[LaneTicket]], bool]
) -> None:
    """Wait until the lane tables (every process's tickets) satisfy ``predicate``."""

    async def check() -> bool:
        return predicate(await admission.tickets())

    await wait_until(check)
