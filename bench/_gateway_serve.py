"""``gateway serve --workers N`` as a separate process for the benchmarks: started with a
config, its worker processes found, and the connections each worker holds."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from bench.client import Endpoint
from bench.common import free_port, process_tree, spawned, wait_healthy


def worker_pids(master: int, workers: int) -> list[int]:
    """The serving processes of ``gateway serve``: the master itself with one worker, else its
    ``multiprocessing`` spawn children (not the resource tracker)."""
    if workers == 1:
        return [master]
    found = []
    for pid in process_tree(master)[1:]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if b"spawn_main" in cmdline.read():
                    found.append(pid)
        except OSError:
            continue
    return sorted(found)


def connections_of(pid: int, port: int) -> int:
    """Established TCP connections of ``pid`` whose local port is ``port``."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        with open(f"/proc/{pid}/net/tcp") as tcp:
            rows = [line.split() for line in tcp.readlines()[1:]]
    except OSError:
        return 0
    local = f":{port:04X}"
    return sum(1 for r in rows if r[1].endswith(local) and r[3] == "01" and r[9] in inodes)


@dataclass(frozen=True)
class Gateway:
    """A running ``gateway serve --workers N``."""

    url: str
    port: int
    master: int
    workers: list[int]

    def named(self) -> dict[str, int]:
        """Its processes by name: ``worker 1``... and, with several workers, ``master``."""
        named = {f"worker {i + 1}": pid for i, pid in enumerate(self.workers)}
        if self.workers != [self.master]:
            named["master"] = self.master
        return named


@asynccontextmanager
async def open_gateway(config: Path, workers: int, tmp: Path, log: Path) -> AsyncIterator[Gateway]:
    """``gateway serve --workers N`` with ``config``, its own state directory, for the block."""
    port = free_port()
    state = tmp / f"state-{workers}"
    state.mkdir()
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    cmd += ["--port", str(port), "--workers", str(workers)]
    env = {"OPENCLAW_STATE_DIR": str(state), "HOME": str(tmp)}
    async with spawned(cmd, log=log, env=env) as process:
        await wait_healthy(Endpoint("127.0.0.1", port, ""), process, 30)
        for _ in range(600):  # /proc has no event to wait for: poll, at most 30 s
            if len(pids := worker_pids(process.pid, workers)) >= workers:
                break
            await trio.sleep(0.05)
        else:
            raise RuntimeError(f"gateway serve --workers {workers}: workers missing: {pids}")
        yield Gateway(f"http://127.0.0.1:{port}", port, process.pid, pids)
