"""A separate OS process using a session store, driven by the cross-process tests.

    python _worker.py lanes DIR KEY COUNT HOLD_MS   print "ready", read a line, take the lane
                                                    COUNT times; print the intervals
    python _worker.py hold DIR KEY MAX_CONCURRENT   take the lane, print "held", wait for a kill
    python _worker.py append DIR KEY                append turns forever, print each committed seq

Times are ``time.monotonic()``, one clock for every process on Linux.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import trio

from gateway.sessions.sqlite import SQLiteSessionStore
from gateway.types import ChatMessage


def say(*words: object) -> None:
    print(*words, flush=True)


async def lanes(store: SQLiteSessionStore, key: str, count: int, hold_ms: float) -> None:
    say("ready")
    await trio.to_thread.run_sync(sys.stdin.readline)  # "go": start with the other workers
    intervals = []
    for _ in range(count):
        async with store.lane(key):
            start = time.monotonic()
            await trio.sleep(hold_ms / 1000)
            intervals.append((start, time.monotonic()))
    say(json.dumps(intervals))


async def hold(store: SQLiteSessionStore, key: str) -> None:
    async with store.lane(key) as lane:
        try:
            say("held")
            await trio.sleep_forever()
        finally:
            if lane.killed:
                say("killed", time.monotonic())


async def append(store: SQLiteSessionStore, key: str) -> None:
    seq = 0
    while True:
        seq += 1
        turn: list[ChatMessage] = [
            {"role": "user", "content": f"question {seq}"},
            {"role": "assistant", "content": f"answer {seq}"},
        ]
        await store.append_turn(key, "main", f"run-{seq}", turn, "complete")
        say(seq)


async def main(*argv: str) -> None:
    mode, directory, key, *rest = argv
    max_concurrent = int(rest[0]) if mode == "hold" else 4
    store = SQLiteSessionStore(Path(directory), max_concurrent=max_concurrent)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.serve)
        if mode == "lanes":
            await lanes(store, key, int(rest[0]), float(rest[1]))
        elif mode == "hold":
            await hold(store, key)
        else:
            await append(store, key)
        await store.aclose()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:])
