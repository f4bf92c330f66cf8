"""Lanes, kills and durability across real OS processes (``_worker.py``) sharing a directory.

Synchronisation with a child is by the lines it prints; where the child's only visible effect is
a row in the lane tables, the test polls them, as another process would.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from gateway.sessions.sqlite import SQLiteTranscripts

from .conftest import SharedFactory, held_lane, wait_for_tickets, wait_until

WORKER = Path(__file__).with_name("_worker.py")
ROOT = Path(__file__).parents[2]


class Child:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    async def readline(self) -> str:
        assert self.process.stdout is not None
        with trio.fail_after(20):
            while b"\n" not in self._buffer:
                chunk = await self.process.stdout.receive_some()
                if not chunk:
                    raise EOFError(f"child {self.pid} exited ({self._buffer!r})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    async def ready(self) -> None:
        assert await self.readline() == "ready"

    async def go(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(b"go\n")

    def sigkill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)


@asynccontextmanager
async def child(*args: object) -> AsyncIterator[Child]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(WORKER), *map(str, args)]
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    try:
        yield Child(process)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    await pipe.aclose()


async def test_one_lane_across_processes(tmp_path: Path) -> None:
    """Three workers open the same fresh directory at once, then share one lane."""
    results: list[list[tuple[float, float]]] = []
    async with (
        child("lanes", tmp_path, "k", 10, 3) as one,
        child("lanes", tmp_path, "k", 10, 3) as two,
        child("lanes", tmp_path, "k", 10, 3) as three,
    ):
        workers = (one, two, three)
        for worker in workers:
            await worker.ready()
        for worker in workers:
            await worker.go()
        for worker in workers:
            results.append([tuple(i) for i in json.loads(await worker.readline())])
            assert await worker.process.wait() == 0
    tagged = sorted((start, end, n) for n, runs in enumerate(results) for start, end in runs)
    assert len(tagged) == 30
    for (_, end, _), (start, _, _) in itertools.pairwise(tagged):
        assert start >= end, "two processes held the lane at once"
    # FIFO keeps one process from holding the lane for all its runs in a row.
    switches = sum(a[2] != b[2] for a, b in itertools.pairwise(tagged))
    assert switches >= 5, tagged


async def test_a_sigkilled_holder_is_reclaimed(open_shared: SharedFactory, tmp_path: Path) -> None:
    store = await open_shared(max_concurrent=1)
    got: list[str] = []
    async with child("hold", tmp_path, "k", 1) as holder, trio.open_nursery() as nursery:
        assert await holder.readline() == "held"

        async def take(key: str | None) -> None:
            async with held_lane(store, key):
                got.append(str(key))

        nursery.start_soon(take, "k")
        nursery.start_soon(take, None)
        await wait_until(lambda: store.statistics().sessions_waiting == 1)
        await trio.sleep(0.05)
        assert got == []  # a live holder keeps its lane
        killed_at = time.monotonic()
        holder.sigkill()
        await wait_until(lambda: len(got) == 2)
        reclaimed_after = time.monotonic() - killed_at
    assert reclaimed_after < 1.0, reclaimed_after
    assert await store.tickets() == []
    assert [p.name for p in (tmp_path / "owners").glob("*.lock")] == [
        f"{store._owner.token}.lock"  # type: ignore[union-attr]
    ]


async def test_a_sigkilled_waiter_leaves_the_queue(
    open_shared: SharedFactory, tmp_path: Path
) -> None:
    store = await open_shared()
    release = trio.Event()
    order: list[str] = []

    async def run(name: str) -> None:
        async with held_lane(store, "k"):
            order.append(name)
            if name == "first":
                await release.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "first")
        await wait_until(lambda: store.statistics().held_keys == ("k",))
        async with child("lanes", tmp_path, "k", 1, 0) as waiter:
            await waiter.ready()
            await waiter.go()
            await wait_for_tickets(store, lambda t: any(x.pid == waiter.pid for x in t))
            nursery.start_soon(run, "after the dead one")
            await wait_until(lambda: store.statistics().sessions_waiting == 1)
            waiter.sigkill()
            await waiter.process.wait()
        release.set()
    assert order == ["first", "after the dead one"]
    assert await store.tickets() == []


async def test_a_kill_request_reaches_another_process(
    open_shared: SharedFactory, tmp_path: Path
) -> None:
    store = await open_shared()
    async with child("hold", tmp_path, "k", 4) as runner:
        assert await runner.readline() == "held"
        requested_at = time.monotonic()
        assert await store.request_kill("k") is True
        word, noticed_at = (await runner.readline()).split()
        assert word == "killed"
        assert await runner.process.wait() == 0
    assert float(noticed_at) - requested_at < 0.2
    assert await store.request_kill("k") is False


async def test_sigkill_during_appends_loses_no_committed_turn(tmp_path: Path) -> None:
    async with child("append", tmp_path, "k") as writer:
        acknowledged = 0
        while acknowledged < 40:
            acknowledged = int(await writer.readline())
        writer.sigkill()
        await writer.process.wait()

    store = SQLiteTranscripts(tmp_path)
    try:
        page = await store.history("k", 10_000, None)
        assert page is not None
        contents = [entry.message["content"] for entry in page.entries]
        turns = len(contents) // 2
        assert len(contents) % 2 == 0 and turns >= acknowledged  # whole turns only
        assert contents == [
            text for n in range(1, turns + 1) for text in (f"question {n}", f"answer {n}")
        ]
        await store.append_turn(
            "k", "main", "later", [{"role": "user", "content": "ok"}], "complete"
        )
    finally:
        await store.aclose()
    with sqlite3.connect(tmp_path / "sessions.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
