"""Lanes within one process, and across two stores standing in for two processes."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel

from gateway.sessions import _tickets
from gateway.sessions._doorbell import Doorbell
from gateway.sessions.admission import AdmissionStatistics
from gateway.sessions.shared_admission import SharedAdmission

from .conftest import SharedFactory, held_lane, wait_for_tickets, wait_until

IDLE = AdmissionStatistics(4, 0, 0, 0, 0, ())


async def queue_in_order(
    nursery: trio.Nursery,
    store: SharedAdmission,
    count: int,
    run: Callable[[int], Awaitable[None]],
) -> None:
    """Start ``count`` tasks ``run(i)`` so that each has queued before the next starts."""
    for i in range(count):
        before = len(await store.tickets())
        nursery.start_soon(run, i)
        await wait_for_tickets(store, lambda t: len(t) > before)  # noqa: B023 - awaited here


async def test_one_key_runs_one_at_a_time_in_arrival_order(store: SharedAdmission) -> None:
    order: list[int] = []
    active = 0
    gate = trio.Event()

    async def run(i: int) -> None:
        nonlocal active
        async with held_lane(store, "k") as lane:
            assert not lane.killed
            active += 1
            assert active == 1
            order.append(i)
            await gate.wait()
            await trio.lowlevel.checkpoint()
            active -= 1

    async with trio.open_nursery() as nursery:
        await queue_in_order(nursery, store, 8, run)
        assert store.statistics().sessions_waiting == 7
        assert store.statistics().held_keys == ("k",)
        gate.set()
    assert order == list(range(8))
    assert store.statistics() == IDLE
    assert await store.tickets() == []


async def test_different_keys_run_in_parallel(store: SharedAdmission) -> None:
    inside = 0
    all_in = trio.Event()

    async def run(key: str | None) -> None:
        nonlocal inside
        async with held_lane(store, key):
            inside += 1
            if inside == 3:
                all_in.set()
            await all_in.wait()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for key in ("a", "b", None):
                nursery.start_soon(run, key)
    assert store.statistics() == IDLE


async def test_max_concurrent_caps_runs_and_queues_fifo(open_shared: SharedFactory) -> None:
    store = await open_shared(max_concurrent=2)
    admitted: list[int] = []
    releases = [trio.Event() for _ in range(6)]
    running = 0
    peak = 0

    async def run(i: int) -> None:
        nonlocal running, peak
        # Distinct keys and stateless runs compete only for the slots.
        async with held_lane(store, f"k{i}" if i % 2 else None):
            admitted.append(i)
            running += 1
            peak = max(peak, running)
            await releases[i].wait()
            running -= 1

    async with trio.open_nursery() as nursery:
        await queue_in_order(nursery, store, 6, run)
        stats = store.statistics()
        assert (stats.slots_held, stats.slots_waiting) == (2, 4)
        assert admitted == [0, 1]
        # Free one slot at a time, newest holder first: the oldest waiter gets it every time.
        for leaving, expected in [(1, 2), (2, 3), (0, 4), (4, 5)]:
            releases[leaving].set()
            count = len(admitted)
            await wait_until(lambda: len(admitted) > count)  # noqa: B023 - awaited here
            assert admitted[-1] == expected
        releases[3].set()
        releases[5].set()
    assert peak == 2
    assert store.statistics() == AdmissionStatistics(2, 0, 0, 0, 0, ())


async def test_a_cancelled_waiter_leaves_the_queue(store: SharedAdmission) -> None:
    order: list[str] = []
    release = trio.Event()

    async def run(name: str, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            async with held_lane(store, "k"):
                order.append(name)
                if name == "holder":
                    await release.wait()

    async with trio.open_nursery() as nursery:
        await nursery.start(run, "holder")
        await wait_for_tickets(store, lambda t: len(t) >= 2)  # session + slot
        cancelled = await nursery.start(run, "cancelled")
        await wait_for_tickets(store, lambda t: len(t) >= 3)
        await nursery.start(run, "next")
        await wait_for_tickets(store, lambda t: len(t) >= 4)
        cancelled.cancel()
        await wait_for_tickets(
            store, lambda t: len(t) == 3
        )  # gone at once, while the holder still runs
        assert store.statistics().sessions_waiting == 1
        release.set()
    assert order == ["holder", "next"]
    assert await store.tickets() == []
    assert store.statistics() == IDLE


async def test_cancelled_while_waiting_for_a_slot_releases_the_session_lane(
    open_shared: SharedFactory,
) -> None:
    store = await open_shared(max_concurrent=1)
    release = trio.Event()

    async def hold() -> None:
        async with held_lane(store, None):
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold)
        await wait_until(lambda: store.statistics().slots_held == 1)
        with trio.move_on_after(0.05) as scope:
            async with held_lane(store, "k"):
                pytest.fail("admitted past the cap")
        assert scope.cancelled_caught
        assert store.statistics().sessions_held == 0
        # The key is free again: a lane on it only waits for the slot.
        release.set()
        async with held_lane(store, "k"):
            pass
    assert await store.tickets() == []


async def test_many_random_cancellations_leave_nothing_held(open_shared: SharedFactory) -> None:
    store = await open_shared(max_concurrent=3)
    done = 0

    async def run(i: int) -> None:
        nonlocal done
        with trio.move_on_after((i % 7) * 0.002):
            async with held_lane(store, f"k{i % 4}" if i % 5 else None):
                await trio.sleep(0.001 * (i % 3))
        done += 1

    async with trio.open_nursery() as nursery:
        for i in range(60):
            nursery.start_soon(run, i)
    assert done == 60
    assert store.statistics() == AdmissionStatistics(3, 0, 0, 0, 0, ())
    assert await store.tickets() == []


async def test_lane_requires_serve(tmp_path: Path) -> None:
    store = SharedAdmission(tmp_path)
    with pytest.raises(RuntimeError, match="serve"):
        store.admit("k", lambda: None)
    assert store.statistics() == IDLE
    await store.aclose()


async def test_two_stores_share_one_lane_fifo(open_shared: SharedFactory) -> None:
    """Two stores on one directory behave like two processes: their only link is the files."""
    first, second = await open_shared(), await open_shared()
    order: list[str] = []
    active = 0
    release = trio.Event()

    async def run(store: SharedAdmission, name: str) -> None:
        nonlocal active
        async with held_lane(store, "k"):
            active += 1
            assert active == 1
            order.append(name)
            if name == "a0":
                await release.wait()
            await trio.sleep(0.001)
            active -= 1

    async with trio.open_nursery() as nursery:
        names = [("a0", first), ("b1", second), ("a2", first), ("b3", second), ("a4", first)]
        for count, (name, store) in enumerate(names, start=1):
            nursery.start_soon(run, store, name)
            # a0 holds two tickets (session + slot); each later run queues one.
            await wait_for_tickets(first, lambda t: len(t) > count)  # noqa: B023 - awaited here
        release.set()
    assert order == ["a0", "b1", "a2", "b3", "a4"]
    assert await first.tickets() == []


async def test_the_slot_cap_is_shared_between_stores(open_shared: SharedFactory) -> None:
    first, second = await open_shared(max_concurrent=1), await open_shared(max_concurrent=1)
    release = trio.Event()
    entered = trio.Event()

    async def hold() -> None:
        async with held_lane(first, None):
            await release.wait()

    async def wait() -> None:
        async with held_lane(second, "other"):
            entered.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold)
        await wait_until(lambda: first.statistics().slots_held == 1)
        nursery.start_soon(wait)
        await wait_until(lambda: second.statistics().slots_waiting == 1)
        await trio.sleep(0.05)  # several polls: it must still be waiting
        assert not entered.is_set()
        release.set()
        with trio.fail_after(1):
            await entered.wait()


async def test_handoff_between_stores_is_prompt(open_shared: SharedFactory) -> None:
    first, second = await open_shared(), await open_shared()
    latencies = []
    for _ in range(5):
        holding = trio.Event()
        release = trio.Event()

        async def hold(holding: trio.Event = holding, release: trio.Event = release) -> None:
            async with held_lane(first, "k"):
                holding.set()
                await release.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await holding.wait()

            async def release_soon(release: trio.Event = release) -> None:
                await wait_until(lambda: second.statistics().sessions_waiting == 1)
                release.set()
                latencies.append(trio.current_time())

            nursery.start_soon(release_soon)
            async with held_lane(second, "k"):
                latencies[-1] = trio.current_time() - latencies[-1]
    # One poll interval (15 ms) plus scheduling; generous for loaded CI machines.
    assert sorted(latencies)[2] < 0.1, latencies


async def test_a_failed_release_is_retried(
    store: SharedAdmission, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A release that cannot write (disk full ...) must not leave the key blocked for good."""
    real = _tickets.dequeue
    failures = 0

    def fail_once(*args: Any) -> _tickets.Fronts:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise sqlite3.OperationalError("database or disk is full")
        return real(*args)

    monkeypatch.setattr(_tickets, "dequeue", fail_once)
    with pytest.raises(sqlite3.OperationalError):
        async with held_lane(store, "k"):
            pass
    assert len(await store.tickets()) == 2  # still in the tables...
    with trio.fail_after(2):
        async with held_lane(store, "k"):  # ...until the poller's retry deletes them
            pass
    assert await store.tickets() == []


async def test_polling_alone_still_hands_off(
    open_shared: SharedFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without doorbells (another platform or network namespace), handoffs and kills between
    processes still happen, one poll interval later."""

    async def unavailable(self: Doorbell) -> bool:
        return False

    monkeypatch.setattr(Doorbell, "open", unavailable)
    first, second = await open_shared(), await open_shared()
    holding, release = trio.Event(), trio.Event()
    killed: list[bool] = []

    async def hold() -> None:
        async with held_lane(first, "k") as lane:
            holding.set()
            await release.wait()
            await trio.sleep_forever()  # until killed from the other store
        killed.append(lane.killed)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold)
        await holding.wait()
        release.set()
        assert await second.request_kill("k") is True
        with trio.fail_after(2):
            async with held_lane(second, "k"):
                pass
    assert killed == [True]
