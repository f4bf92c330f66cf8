"""Admission's own cost per run, timed in process: ``LocalAdmission`` (a process alone on its
state), SQLite's ``SharedAdmission`` (processes sharing a state directory) and ``PgAdmission``
(hosts sharing a PostgreSQL database), each the real class on real storage.

- ``stateful``: one run at a time, each on a session key of its own (lane + slot, nobody
  waiting): the time to enter ``admit`` (arrival → admitted) and to leave it (the release);
- ``stateless``: the same without a key (a slot only);
- ``handover``: two instances (two hosts or processes; for ``local``, two tasks of one) take
  one lane in turns: one holds it while the other waits; the time from the holder starting to
  leave to the waiter being admitted.

CPU per run is this process's ``time.process_time()`` over the block (its threads included),
and for PostgreSQL also the server's (its processes' CPU time from ``/proc``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bench.common import percentile, tree_cpu_seconds
from gateway.sessions.admission import Admission, LocalAdmission
from gateway.sessions.postgres.store import PgStore
from gateway.sessions.shared_admission import SharedAdmission

MAX_CONCURRENT = 256
KINDS = ("local", "sqlite", "postgres")


def _noop() -> None:
    return None


def _stats(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}


@asynccontextmanager
async def open_pair(kind: str, directory: Path, url: str) -> AsyncIterator[list[Admission]]:
    """Two serving admissions of ``kind`` on shared storage (``local``: the same one twice)."""
    if kind == "local":
        local = LocalAdmission(MAX_CONCURRENT)
        yield [local, local]
        return
    await trio.Path(directory).mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        pair: list[Admission] = []
        for _ in range(2):
            if kind == "sqlite":
                shared = SharedAdmission(directory, max_concurrent=MAX_CONCURRENT)
                stack.push_async_callback(shared.aclose)
                await nursery.start(shared.serve)
                pair.append(shared)
            else:
                store = PgStore(url, max_concurrent=MAX_CONCURRENT)
                stack.push_async_callback(store.aclose)
                await nursery.start(store.serve)
                pair.append(store.admission)
        try:
            yield pair
        finally:
            nursery.cancel_scope.cancel()


async def uncontended(
    admission: Admission, prefix: str | None, runs: int, server_pid: int | None
) -> dict[str, Any]:
    """``runs`` runs one after the other, each on a new key (``prefix`` ``None``: no key)."""
    enter: list[float] = []
    leave: list[float] = []
    cpu = time.process_time()
    server = tree_cpu_seconds(server_pid) if server_pid else 0.0
    for n in range(runs):
        key = None if prefix is None else f"{prefix}{n}"
        started = time.perf_counter()
        async with admission.admit(key, _noop):
            admitted = time.perf_counter()
        enter.append(admitted - started)
        leave.append(time.perf_counter() - admitted)
    cpu = time.process_time() - cpu
    out = {
        "enter": _stats(enter),
        "leave": _stats(leave),
        "total": _stats([a + b for a, b in zip(enter, leave, strict=True)]),
        "cpu_us_per_run": 1e6 * cpu / runs,
    }
    if server_pid:
        out["server_cpu_us_per_run"] = 1e6 * (tree_cpu_seconds(server_pid) - server) / runs
    return out


async def _until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    # Admission has no event for "someone waits": poll its statistics (a benchmark, bounded).
    with trio.fail_after(seconds):
        while True:
            if condition():
                return
            await trio.sleep(0.0002)


async def handover(pair: list[Admission], key: str, rounds: int) -> dict[str, Any]:
    """The lane of ``key`` passed ``rounds`` times between the two, in turns."""
    samples: list[float] = []
    for n in range(rounds):
        holder, waiter = pair[n % 2], pair[(n + 1) % 2]
        admitted: list[float] = []

        async def wait(waiter: Admission = waiter, admitted: list[float] = admitted) -> None:
            async with waiter.admit(key, _noop):
                admitted.append(time.perf_counter())

        async with trio.open_nursery() as nursery, holder.admit(key, _noop):
            nursery.start_soon(wait)
            await _until(lambda w=waiter: w.statistics().sessions_waiting > 0)
            released = time.perf_counter()
        samples.append(admitted[0] - released)
    return _stats(samples)


async def measure_admission(
    url: str, directory: Path, *, runs: int, rounds: int, server_pid: int | None
) -> dict[str, Any]:
    """Every kind of admission (see the module docstring); ``url``: a database of its own."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        async with open_pair(kind, directory / kind, url) as pair:
            pid = server_pid if kind == "postgres" else None
            await uncontended(pair[0], "warm-", min(runs, 50), None)
            out[kind] = {
                "stateful": await uncontended(pair[0], f"{kind}-", runs, pid),
                "stateless": await uncontended(pair[0], None, runs, pid),
                "handover": await handover(pair, f"{kind}-shared", rounds),
            }
        print(
            f"  admission {kind}: stateful enter p50 "
            f"{out[kind]['stateful']['enter']['p50_ms']:.3f} ms, handover p50 "
            f"{out[kind]['handover']['p50_ms']:.3f} ms"
        )
    return {"results": out, "config": {"runs": runs, "handover_rounds": rounds}}
