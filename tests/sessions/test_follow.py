"""Waking followers (``gateway.sessions._follow``) without a database: a dictionary stands for
the transcripts, a probe for the query that fingerprints them, trio's clock for time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
import trio
import trio.testing

from gateway.sessions._follow import AppendWatch, FollowStatistics

INTERVAL = 0.25


class Transcripts:
    """Messages per session key, as another process writes them (nobody rings)."""

    def __init__(self) -> None:
        self.messages: dict[str, list[str]] = {}
        self.probes: list[list[str]] = []
        self.reads = 0
        self.probe_delay = 0.0

    async def read_after(self, key: str, after: int) -> list[str] | None:
        await trio.lowlevel.checkpoint()
        self.reads += 1
        if key not in self.messages:
            return None
        return self.messages[key][after:]

    async def probe(self, keys: Sequence[str]) -> Mapping[str, object]:
        self.probes.append(sorted(keys))
        await trio.sleep(self.probe_delay)
        return {key: len(self.messages[key]) for key in keys if key in self.messages}


async def follow(watch: AppendWatch, db: Transcripts, key: str, after: int) -> list[str] | None:
    return await watch.wait_for(key, lambda: db.read_after(key, after))


async def test_an_append_rung_here_wakes_at_once(autojump_clock: trio.abc.Clock) -> None:
    db = Transcripts()
    db.messages["k"] = ["old"]
    watch = AppendWatch(None, INTERVAL)  # one process: only its own rings
    got: list[list[str] | None] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            got.append(await follow(watch, db, "k", 1))

        nursery.start_soon(run)
        await trio.testing.wait_all_tasks_blocked()
        assert watch.statistics() == FollowStatistics(sessions=1, waiters=1)
        started = trio.current_time()
        db.messages["k"].append("new")
        watch.ring("other")  # another session's ring wakes nobody here
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        watch.ring("k")
    assert got == [["new"]] and trio.current_time() == started
    assert watch.statistics() == FollowStatistics(0, 0)


async def test_what_is_there_comes_without_waiting_and_a_gone_session_stops() -> None:
    db = Transcripts()
    db.messages["k"] = ["a", "b"]
    watch = AppendWatch(db.probe, INTERVAL)
    assert await follow(watch, db, "k", 0) == ["a", "b"]
    assert await follow(watch, db, "missing", 0) is None
    assert db.probes == [] and watch.statistics() == FollowStatistics(0, 0)


async def test_one_probe_per_interval_serves_every_follower(
    autojump_clock: trio.abc.Clock,
) -> None:
    db = Transcripts()
    keys = [f"k{n}" for n in range(20)]
    for key in keys:
        db.messages[key] = []
    watch = AppendWatch(db.probe, INTERVAL)
    woke: dict[str, float] = {}
    k3_woke = trio.Event()
    async with trio.open_nursery() as nursery:

        async def run(key: str) -> None:
            assert await follow(watch, db, key, 0) == ["hi"]
            woke[key] = trio.current_time()
            if key == "k3":
                k3_woke.set()

        for key in keys:
            nursery.start_soon(run, key)
        await trio.sleep(10 * INTERVAL)  # nothing happens: one probe per interval, no more
        assert 9 <= len(db.probes) <= 11
        assert all(probe == sorted(keys) for probe in db.probes)
        reads_before = db.reads
        written_at = trio.current_time()
        db.messages["k3"].append("hi")  # another process writes k3
        await k3_woke.wait()
        # Only k3's follower read again, within one interval.
        assert woke["k3"] - written_at <= INTERVAL
        assert db.reads == reads_before + 1
        for key in keys:
            if key != "k3":
                db.messages[key].append("hi")
    assert set(woke) == set(keys)
    assert watch.statistics() == FollowStatistics(0, 0)


async def test_a_slow_probe_is_not_run_again_meanwhile(autojump_clock: trio.abc.Clock) -> None:
    db = Transcripts()
    db.messages["a"] = []
    db.messages["b"] = []
    db.probe_delay = 5 * INTERVAL  # a database slower than the interval
    watch = AppendWatch(db.probe, INTERVAL)
    with trio.move_on_after(20 * INTERVAL):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, watch, db, "a", 0)
            nursery.start_soon(follow, watch, db, "b", 0)
    # Back to back at most, never two at once; the waiting follower did not spin meanwhile.
    assert 2 <= len(db.probes) <= 4
    assert db.reads <= 2 * (len(db.probes) + 1)


async def test_a_change_the_probe_sees_first_time_rings(autojump_clock: trio.abc.Clock) -> None:
    """A follower that read just before another process wrote is woken even when the probe
    sees that session for the first time (its first fingerprint is not taken as the base)."""
    db = Transcripts()
    db.messages["k"] = []
    watch = AppendWatch(db.probe, INTERVAL)

    async def read_then_other_process_writes() -> list[str] | None:
        found = await db.read_after("k", 0)
        db.messages["k"].append("late")
        return found

    with trio.fail_after(2 * INTERVAL):
        assert await watch.wait_for("k", read_then_other_process_writes) == ["late"]


@pytest.mark.parametrize("waiters", [1, 3])
async def test_cancelled_followers_leave_nothing(
    autojump_clock: trio.abc.Clock, waiters: int
) -> None:
    db = Transcripts()
    db.messages["k"] = []
    watch = AppendWatch(db.probe, INTERVAL)
    with trio.move_on_after(3 * INTERVAL):
        async with trio.open_nursery() as nursery:
            for _ in range(waiters):
                nursery.start_soon(follow, watch, db, "k", 0)
            await trio.testing.wait_all_tasks_blocked()
            assert watch.statistics() == FollowStatistics(1, waiters)
    assert watch.statistics() == FollowStatistics(0, 0)
    watch.ring("k")
    watch.ring_all()  # nobody to wake: nothing happens
