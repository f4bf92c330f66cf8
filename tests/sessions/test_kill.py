"""Kill requests through shared admission, in process and between two admissions standing in for
two processes."""

from __future__ import annotations

import trio
import trio.lowlevel

from gateway.sessions.base import TurnStatus
from gateway.sessions.shared_admission import SharedAdmission
from gateway.sessions.sqlite import SQLiteTranscripts
from gateway.types import ChatMessage

from .conftest import Holder, SharedFactory, held_lane, wait_until

TURN: list[ChatMessage] = [{"role": "user", "content": "go"}]


async def killable_run(
    store: SharedAdmission,
    transcripts: SQLiteTranscripts,
    key: str,
    holders: list[Holder],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """A run shaped like the real one: it records its turn, shielded, inside the lane."""
    async with held_lane(store, key) as holder:
        holders.append(holder)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                status: TurnStatus = "aborted" if holder.killed else "error"
                await transcripts.append_turn(key, "main", "run", TURN, status)
    # Its scope absorbed the kill: the run ends normally, after its lane is released.
    assert holder.killed


async def test_kill_in_process_is_immediate(
    store: SharedAdmission, transcripts: SQLiteTranscripts
) -> None:
    holders: list[Holder] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(killable_run, store, transcripts, "k", holders)
        assert await store.request_kill("k") is True
        # on_kill ran before request_kill returned, no polling involved.
        assert holders[0].scope.cancel_called and holders[0].killed
    page = await transcripts.history("k", 10, None)
    assert page is not None and [e.status for e in page.entries] == ["aborted"]
    assert await store.request_kill("k") is False
    assert await store.request_kill("never-used") is False
    assert await store.tickets() == []


async def test_kill_spares_the_queued_run(
    store: SharedAdmission, transcripts: SQLiteTranscripts
) -> None:
    holders: list[Holder] = []
    second_ran = trio.Event()

    async def second() -> None:
        async with held_lane(store, "k") as holder:
            assert not holder.killed
            second_ran.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(killable_run, store, transcripts, "k", holders)
        nursery.start_soon(second)
        await wait_until(lambda: store.statistics().sessions_waiting == 1)
        assert await store.request_kill("k") is True
    assert second_ran.is_set()


async def test_kill_while_queued_for_a_slot(open_shared: SharedFactory) -> None:
    """The lane holder waiting for a slot is the session's active run: a kill takes it out of
    the queue at once (it never ran: its block is not entered)."""
    store = await open_shared(max_concurrent=1)
    release = trio.Event()
    entered = False
    holders: list[Holder] = []

    async def hold_the_slot() -> None:
        async with held_lane(store, None):
            await release.wait()

    async def run() -> None:
        nonlocal entered
        holder = Holder()
        holders.append(holder)
        with holder.scope:
            async with store.admit("k", holder.kill):
                entered = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_the_slot)
        await wait_until(lambda: store.statistics().slots_held == 1)
        nursery.start_soon(run)
        await wait_until(lambda: store.statistics().slots_waiting == 1)
        assert store.statistics().held_keys == ("k",)
        assert await store.request_kill("k") is True
        # It leaves without waiting for the slot, which is still held.
        await wait_until(lambda: store.statistics().sessions_held == 0)
        assert store.statistics().slots_held == 1
        release.set()
    assert holders[0].killed and not entered
    assert await store.tickets() == []


async def test_kill_from_another_store(
    open_shared: SharedFactory, transcripts: SQLiteTranscripts
) -> None:
    runner, killer = await open_shared(), await open_shared()
    holders: list[Holder] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(killable_run, runner, transcripts, "k", holders)
        started = trio.current_time()
        assert await killer.request_kill("k") is True
        await wait_until(lambda: holders[0].killed)
        latency = trio.current_time() - started
    assert latency < 0.2, latency  # one 15 ms poll, with room for a loaded machine
    assert await killer.request_kill("k") is False
    assert await killer.tickets() == []


async def test_kill_from_another_store_when_queued_for_a_slot(open_shared: SharedFactory) -> None:
    runner, killer = await open_shared(max_concurrent=1), await open_shared(max_concurrent=1)
    release = trio.Event()
    done = trio.Event()

    async def hold_the_slot() -> None:
        async with held_lane(killer, None):
            await release.wait()

    async def run() -> None:
        holder = Holder()
        with holder.scope:
            async with runner.admit("k", holder.kill):
                raise AssertionError("a killed waiter was admitted")
        assert holder.killed
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(hold_the_slot)
        await wait_until(lambda: killer.statistics().slots_held == 1)
        nursery.start_soon(run)
        await wait_until(lambda: runner.statistics().slots_waiting == 1)
        assert await killer.request_kill("k") is True
        with trio.fail_after(2):
            await done.wait()
        release.set()
