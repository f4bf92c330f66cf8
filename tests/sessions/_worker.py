"""A separate OS process using shared admission or the transcripts, driven by the
cross-process tests.

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

from gateway.sessions.shared_admission import SharedAdmission
from gateway.sessions.sqlite import SQLiteTranscripts
from gateway.types import ChatMessage


def say(*words: object) -> None:
    print(*words, flush=True)


async def lanes(store: SharedAdmission, key: str, count: int, hold_ms: float) -> None:
    say("ready")
    await trio.to_thread.run_sync(sys.stdin.readline)  # "go": start with the other workers
    intervals = []
    for _ in range(count):
        async with store.admit(key, _never_killed):
            start = time.monotonic()
            await trio.sleep(hold_ms / 1000)
            intervals.append((start, time.monotonic()))
    say(json.dumps(intervals))


async def hold(store: SharedAdmission, key: str) -> None:
    with trio.CancelScope() as scope:

        def kill() -> None:
            say("killed", time.monotonic())
            scope.cancel()

        async with store.admit(key, kill):
            say("held")
            await trio.sleep_forever()


def _never_killed() -> None:
    raise AssertionError("no kill was requested")


async def append(store: SQLiteTranscripts, key: str) -> None:
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
    if mode == "append":
        transcripts = SQLiteTranscripts(Path(directory))
        await append(transcripts, key)
        return
    max_concurrent = int(rest[0]) if mode == "hold" else 4
    admission = SharedAdmission(Path(directory), max_concurrent=max_concurrent)
    async with trio.open_nursery() as nursery:
        await nursery.start(admission.serve)
        if mode == "lanes":
            await lanes(admission, key, int(rest[0]), float(rest[1]))
        else:
            await hold(admission, key)
        await admission.aclose()


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:])
