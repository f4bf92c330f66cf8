"""In-process admission: per-key FIFO lanes, the slot cap, cancellation while waiting and kills,
on trio's virtual clock (``autojump_clock``): waits are events and virtual timeouts, no sleeping."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from gateway.sessions.admission import AdmissionStatistics, LocalAdmission

from .conftest import Holder, held_lane

IDLE = AdmissionStatistics(2, 0, 0, 0, 0, ())


async def settle() -> None:
    """Let every task run until it blocks (a lane, a slot, a sleep): all is in process."""
    await trio.testing.wait_all_tasks_blocked()


async def test_one_key_runs_one_at_a_time_in_arrival_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    admission = LocalAdmission(2)
    order: list[int] = []
    active = 0

    async def run(i: int) -> None:
        nonlocal active
        async with held_lane(admission, "k"):
            active += 1
            assert active == 1
            order.append(i)
            await trio.sleep(1)
            active -= 1

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(run, i)
            await settle()
        assert admission.statistics().held_keys == ("k",)
    assert order == list(range(6))
    assert trio.current_time() == pytest.approx(6)  # one after the other
    assert admission.statistics() == IDLE


async def test_the_cap_admits_in_arrival_order(autojump_clock: trio.testing.MockClock) -> None:
    admission = LocalAdmission(2)
    admitted: list[int] = []
    releases = [trio.Event() for _ in range(6)]
    running = peak = 0

    async def run(i: int) -> None:
        nonlocal running, peak
        # Distinct keys and stateless runs compete only for the slots.
        async with held_lane(admission, f"k{i}" if i % 2 else None):
            admitted.append(i)
            running += 1
            peak = max(peak, running)
            await releases[i].wait()
            running -= 1

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(run, i)
            await settle()
        stats = admission.statistics()
        assert (stats.slots_held, stats.slots_waiting) == (2, 4)
        assert admitted == [0, 1]
        # Free one slot at a time, newest holder first: the oldest waiter gets it every time.
        for leaving, expected in [(1, 2), (2, 3), (0, 4), (4, 5)]:
            releases[leaving].set()
            await trio.testing.wait_all_tasks_blocked()
            assert admitted[-1] == expected
        releases[3].set()
        releases[5].set()
    assert peak == 2
    assert admission.statistics() == IDLE


async def test_a_cancelled_waiter_leaves_the_lane_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    admission = LocalAdmission(2)
    order: list[str] = []

    async def run(name: str, patience: float) -> None:
        with trio.move_on_after(patience):
            async with held_lane(admission, "k"):
                order.append(name)
                await trio.sleep(10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "holder", 100)
        await settle()
        nursery.start_soon(run, "impatient", 1)
        await settle()
        nursery.start_soon(run, "next", 100)
        await settle()
        await trio.sleep(2)  # the impatient one gave up after 1 s (virtual)
        assert admission.statistics().sessions_waiting == 1
    assert order == ["holder", "next"]
    assert admission.statistics() == IDLE


async def test_cancelled_while_waiting_for_a_slot_releases_the_lane(
    autojump_clock: trio.testing.MockClock,
) -> None:
    admission = LocalAdmission(1)
    release = trio.Event()

    async def hold() -> None:
        async with held_lane(admission, None):
            await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(5) as scope:
            async with held_lane(admission, "k"):
                pytest.fail("admitted past the cap")
        assert scope.cancelled_caught
        assert admission.statistics().sessions_held == 0
        release.set()
        async with held_lane(admission, "k"):  # the key is free again
            pass
    assert admission.statistics() == AdmissionStatistics(1, 0, 0, 0, 0, ())


async def test_a_kill_reaches_the_lane_holder_only(autojump_clock: trio.testing.MockClock) -> None:
    admission = LocalAdmission(1)
    holders: list[Holder] = []
    ended: list[str] = []

    async def run(name: str) -> None:
        async with held_lane(admission, "k") as holder:
            holders.append(holder)
            await trio.sleep(100)
        ended.append(f"{name} killed={holder.killed}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "first")
        await settle()
        nursery.start_soon(run, "second")
        await settle()
        assert await admission.request_kill("k") is True  # on_kill ran before this returned
        assert holders[0].killed
        assert await admission.request_kill("other") is False
    assert ended == ["first killed=True", "second killed=False"]
    assert trio.current_time() == pytest.approx(100)  # the second ran its full time
    assert await admission.request_kill("k") is False


async def test_stateless_runs_need_only_a_slot(autojump_clock: trio.testing.MockClock) -> None:
    admission = LocalAdmission(3)
    inside = 0
    all_in = trio.Event()

    async def run(key: str | None) -> None:
        nonlocal inside
        async with held_lane(admission, key):
            inside += 1
            if inside == 3:
                all_in.set()
            await all_in.wait()

    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            for key in ("a", None, None):
                nursery.start_soon(run, key)
    assert admission.statistics() == AdmissionStatistics(3, 0, 0, 0, 0, ())


def test_max_concurrent_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LocalAdmission(0)
