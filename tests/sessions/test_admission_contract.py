"""The promises of ``Admission`` (see ``gateway.sessions.admission``), checked on every
implementation: in process (``local``), shared through SQLite on a state directory (``shared``,
a ``StateAdmission`` told it has siblings) and on PostgreSQL (``postgres``). The ``-2`` layouts
open two instances on the same directory or database, standing for two processes or hosts, and
the runs of each test alternate between them; the others play both parts with one instance.

Arrival order is made deterministic by waiting, before the next run starts, until the previous
one is admitted or counted as waiting by its instance's ``statistics()``: an instance counts a
waiter once its place in the queue is taken. Only real time here: the shared implementations use
threads and sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
import trio

from gateway.sessions import state_admission
from gateway.sessions.admission import Admission, AdmissionStatistics
from gateway.sessions.postgres import admission as pg_admission
from gateway.sessions.shared_admission import SharedAdmission

from .admissions import Runs, admitted, finished, idle, instances, total

# Polls stretched this far leave only the notifications (doorbells, LISTEN/NOTIFY) to hand
# over between instances: what happens well within it did not wait for a poll.
SLOW_POLL = 5.0
PROMPT = 1.0

LAYOUTS = {
    "local": ("local", 1),
    "shared": ("shared", 1),
    "shared-2": ("shared", 2),
    "postgres": ("postgres", 1),
    "postgres-2": ("postgres", 2),
}

Pair = tuple[Admission, Admission]
OpenPair = Callable[..., Awaitable[Pair]]


@dataclass(frozen=True, slots=True)
class Layout:
    kind: str
    count: int
    directory: Path
    url: str | None


@pytest.fixture(params=LAYOUTS)
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> Layout:
    kind, count = LAYOUTS[request.param]
    url = request.getfixturevalue("pg_url") if kind == "postgres" else None
    return Layout(kind, count, tmp_path, url)


@pytest.fixture
async def open_pair(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenPair]:
    """``await open_pair(max_concurrent, slow_poll=False)``: two serving instances (the same
    one twice in a single-instance layout); closed at the end of the test."""
    async with instances(layout.kind, layout.directory, layout.url) as open_one:

        async def opener(max_concurrent: int = 2, *, slow_poll: bool = False) -> Pair:
            if slow_poll:
                slow = partial(SharedAdmission, poll_interval=SLOW_POLL)
                monkeypatch.setattr(state_admission, "SharedAdmission", slow)
                monkeypatch.setattr(pg_admission, "POLL_INTERVAL", SLOW_POLL)
            first = await open_one(max_concurrent)
            second = await open_one(max_concurrent) if layout.count == 2 else first
            return first, second

        yield opener


async def test_one_run_per_key_at_a_time_in_arrival_order(open_pair: OpenPair) -> None:
    a, b = await open_pair()
    async with trio.open_nursery() as nursery:
        runs = Runs(nursery, 2)
        started = [await runs.start(f"r{i}", (a, b)[i % 2], "k") for i in range(6)]
        assert runs.order == ["r0"]
        assert total(a, b) == AdmissionStatistics(2, 1, 5, 1, 0, ("k",))
        assert a.statistics().held_keys == ("k",)
        for i, run in enumerate(started[1:], start=1):
            started[i - 1].release.set()
            await admitted(run)
            assert total(a, b) == AdmissionStatistics(2, 1, 5 - i, 1, 0, ("k",))
            assert run.admission.statistics().held_keys == ("k",)
        started[-1].release.set()
    assert runs.order == [f"r{i}" for i in range(6)]
    assert total(a, b) == idle(2)


async def test_max_concurrent_is_one_cap_in_arrival_order(open_pair: OpenPair) -> None:
    a, b = await open_pair(max_concurrent=2)
    async with trio.open_nursery() as nursery:
        runs = Runs(nursery, 2)
        # Distinct keys and stateless runs compete only for the slots.
        keys = [None, "k1", None, "k3", None, "k5"]
        started = [await runs.start(f"r{i}", (a, b)[i % 2], key) for i, key in enumerate(keys)]
        assert runs.order == ["r0", "r1"]
        # A run with a key holds its lane while it waits for a slot.
        assert total(a, b) == AdmissionStatistics(2, 3, 0, 2, 4, ("k1", "k3", "k5"))
        if a is not b:
            assert a.statistics() == AdmissionStatistics(2, 0, 0, 1, 2, ())
        # Free one slot at a time, newest holder first: the oldest waiter gets it every time.
        for leaving, expected in [(1, 2), (2, 3), (0, 4), (4, 5)]:
            started[leaving].release.set()
            await admitted(started[expected])
            assert runs.order[-1] == f"r{expected}"
        assert total(a, b) == AdmissionStatistics(2, 2, 0, 2, 0, ("k3", "k5"))
        started[3].release.set()
        started[5].release.set()
    assert runs.order == [f"r{i}" for i in range(6)]
    assert total(a, b) == idle(2)


async def test_a_cancelled_waiter_leaves_the_queue_at_once(open_pair: OpenPair) -> None:
    a, b = await open_pair()
    async with trio.open_nursery() as nursery:
        runs = Runs(nursery, 2)
        holder = await runs.start("holder", a, "k")
        leaver = await runs.start("leaver", b, "k")
        after = await runs.start("after", a, "k")
        assert total(a, b) == AdmissionStatistics(2, 1, 2, 1, 0, ("k",))
        cancelled_at = trio.current_time()
        leaver.scope.cancel()
        left = await finished(leaver) - cancelled_at
        assert total(a, b) == AdmissionStatistics(2, 1, 1, 1, 0, ("k",))
        holder.release.set()
        # Had the leaver kept its place, ``after`` would wait behind it for good.
        handoff = await admitted(after)
        after.release.set()
    assert runs.order == ["holder", "after"]
    assert not leaver.entered.is_set() and not leaver.killed
    assert left < PROMPT and handoff < PROMPT, (left, handoff)
    assert total(a, b) == idle(2)


async def test_cancelled_while_waiting_for_a_slot_frees_the_lane(open_pair: OpenPair) -> None:
    a, b = await open_pair(max_concurrent=1)
    async with trio.open_nursery() as nursery:
        runs = Runs(nursery, 1)
        cap = await runs.start("cap", a, None)
        leaver = await runs.start("leaver", b, "k")  # holds k's lane, waits for the slot
        assert total(a, b) == AdmissionStatistics(1, 1, 0, 1, 1, ("k",))
        assert b.statistics().held_keys == ("k",)
        leaver.scope.cancel()
        await finished(leaver)
        assert total(a, b) == AdmissionStatistics(1, 0, 0, 1, 0, ())
        again = await runs.start("again", a, "k")  # the lane is free: it waits for the slot
        assert total(a, b) == AdmissionStatistics(1, 1, 0, 1, 1, ("k",))
        cap.release.set()
        await admitted(again)
        again.release.set()
    assert runs.order == ["cap", "again"]
    assert total(a, b) == idle(1)


async def test_request_kill_calls_the_lane_holder_on_kill(open_pair: OpenPair) -> None:
    a, b = await open_pair(max_concurrent=1, slow_poll=True)
    assert await b.request_kill("k") is False  # nothing holds it
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        runs = Runs(nursery, 1)
        holder = await runs.start("holder", a, "k")
        spared = await runs.start("spared", b, "k")  # queued behind: not the active run
        asked = trio.current_time()
        assert await b.request_kill("k") is True
        if a is b:
            assert holder.killed  # in process, on_kill ran before request_kill returned
        await finished(holder)
        latencies.append(holder.killed_at - asked)
        await admitted(spared)
        # A lane holder waiting for a slot is its session's active run too: killed, it leaves.
        slotless = await runs.start("slotless", a, "j")
        assert total(a, b) == AdmissionStatistics(1, 2, 0, 1, 1, ("j", "k"))
        asked = trio.current_time()
        assert await b.request_kill("j") is True
        await finished(slotless)
        latencies.append(slotless.killed_at - asked)
        assert total(a, b) == AdmissionStatistics(1, 1, 0, 1, 0, ("k",))
        spared.release.set()
    assert runs.order == ["holder", "spared"]
    assert not spared.killed and not slotless.entered.is_set()
    assert max(latencies) < PROMPT, latencies
    assert await b.request_kill("k") is False
    assert total(a, b) == idle(1)


async def test_a_release_wakes_the_next_waiter_at_once(open_pair: OpenPair) -> None:
    """Between two instances a hand-off is a notification, not a poll (polls are stretched)."""
    a, b = await open_pair(max_concurrent=1, slow_poll=True)
    handoffs: list[float] = []
    async with trio.open_nursery() as nursery:
        runs = Runs(nursery, 1)
        keys = ["k", "k", "k", None, None, None]  # lane hand-offs, then slot hand-offs
        previous = await runs.start("r0", a, keys[0])
        for i, key in enumerate(keys[1:], start=1):
            run = await runs.start(f"r{i}", (a, b)[i % 2], key)
            previous.release.set()
            handoffs.append(await admitted(run))
            previous = run
        previous.release.set()
    assert runs.order == [f"r{i}" for i in range(6)]
    assert max(handoffs) < PROMPT, handoffs
