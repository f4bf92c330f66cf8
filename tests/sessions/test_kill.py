"""Kill requests, in process and between two stores standing in for two processes."""

from __future__ import annotations

import trio
import trio.lowlevel

from gateway.sessions.base import TurnStatus
from gateway.sessions.lanes import Lane
from gateway.sessions.sqlite import SQLiteSessionStore
from gateway.types import ChatMessage

from .conftest import StoreFactory, wait_until

TURN: list[ChatMessage] = [{"role": "user", "content": "go"}]


async def killable_run(
    store: SQLiteSessionStore,
    key: str,
    lanes: list[Lane],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A run shaped like the real one: it records its turn, shielded, inside the lane."""
    async with store.lane(key) as lane:
        lanes.append(lane)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                status: TurnStatus = "aborted" if lane.killed else "error"
                await store.append_turn(key, "main", "run", TURN, status)
    # The scope absorbed the kill: the run ends normally, after its lane is released.
    assert lane.killed


async def test_kill_in_process_is_immediate(store: SQLiteSessionStore) -> None:
    lanes: list[Lane] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(killable_run, store, "k", lanes)
        assert await store.request_kill("k") is True
        # Cancelled before request_kill returned, no polling involved.
        assert lanes[0].cancel_scope.cancel_called and lanes[0].killed
    page = await store.history("k", 10, None)
    assert page is not None and [e.status for e in page.entries] == ["aborted"]
    assert await store.request_kill("k") is False
    assert await store.request_kill("never-used") is False
    assert await store.lane_tickets() == []


async def test_kill_spares_the_queued_run(store: SQLiteSessionStore) -> None:
    lanes: list[Lane] = []
    second_ran = trio.Event()

    async def second() -> None:
        async with store.lane("k") as lane:
            assert not lane.killed
            second_ran.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(killable_run, store, "k", lanes)
        nursery.start_soon(second)
        await wait_until(lambda: store.lane_statistics().sessions_waiting == 1)
        assert await store.request_kill("k") is True
    assert second_ran.is_set()


async def test_kill_while_queued_for_a_slot(open_store: StoreFactory) -> None:
    store = await open_store(max_concurrent=1)
    release = trio.Event()
    body_started = False

    async def hold_the_slot() -> None:
        async with store.lane(None):
            await release.wait()

    async def run() -> None:
        nonlocal body_started
        async with store.lane("k") as lane:
            try:
                body_started = True
                await trio.lowlevel.checkpoint()  # raises at once: the run never really starts
                raise AssertionError("a killed run went on")
            finally:
                with trio.CancelScope(shield=True):
                    await store.append_turn("k", "main", "run", TURN, "aborted")
        assert lane.killed

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_the_slot)
        await wait_until(lambda: store.lane_statistics().slots_held == 1)
        nursery.start_soon(run)
        await wait_until(lambda: store.lane_statistics().slots_waiting == 1)
        assert store.lane_statistics().held_keys == ("k",)
        assert await store.request_kill("k") is True
        # It leaves without waiting for the slot, which is still held.
        await wait_until(lambda: store.lane_statistics().sessions_held == 0)
        assert store.lane_statistics().slots_held == 1
        release.set()
    assert body_started
    assert await store.context("k", None) == TURN


async def test_kill_from_another_store(open_store: StoreFactory) -> None:
    runner, killer = await open_store(), await open_store()
    lanes: list[Lane] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(killable_run, runner, "k", lanes)
        started = trio.current_time()
        assert await killer.request_kill("k") is True
        await wait_until(lambda: lanes[0].killed)
        latency = trio.current_time() - started
    assert latency < 0.2, latency  # one 15 ms poll, with room for a loaded machine
    assert await killer.request_kill("k") is False
    assert await killer.lane_tickets() == []


async def test_kill_from_another_store_when_queued_for_a_slot(open_store: StoreFactory) -> None:
    runner, killer = await open_store(max_concurrent=1), await open_store(max_concurrent=1)
    release = trio.Event()
    done = trio.Event()

    async def hold_the_slot() -> None:
        async with killer.lane(None):
            await release.wait()

    async def run() -> None:
        async with runner.lane("k") as lane:
            await trio.sleep_forever()
        assert lane.killed
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_the_slot)
        await wait_until(lambda: killer.lane_statistics().slots_held == 1)
        nursery.start_soon(run)
        await wait_until(lambda: runner.lane_statistics().slots_waiting == 1)
        assert await killer.request_kill("k") is True
        with trio.fail_after(2):
            await done.wait()
        release.set()
