"""Running the gateway as real OS processes (Hypercorn CLI, ``gateway serve``).

Each process runs in a session (and process group) of its own, and leaving ``process`` stops
the whole group: Hypercorn's workers and ``gateway serve``'s workers included, even when the
test killed their parent itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import trio

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(
    args: list[str], tmp_path: Path, log_name: str = "stderr.log", **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` with its output in ``tmp_path/log_name``; on exit, it and every process of
    its group (its children) are killed if still running, and waited for."""
    log = (tmp_path / log_name).open("wb")
    full_env = {**os.environ, "OPENCLAW_STATE_DIR": str(tmp_path / "state"), **env}
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        stop_group(proc.pid)
        log.close()


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append(int(entry.name))
    return members


def stop_group(pgid: int, seconds: float = 5.0) -> None:
    """Kill what is left of process group ``pgid`` and wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + seconds
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


async def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        with trio.fail_after(20):
            while True:
                assert proc.poll() is None, "server exited"
                try:
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)  # an external process: nothing to await but its port
