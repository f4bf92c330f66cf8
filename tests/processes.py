"""Running the gateway as real OS processes (Hypercorn CLI, ``gateway serve``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
    """Run ``args`` with its output in ``tmp_path/log_name``; killed on exit if still running."""
    log = (tmp_path / log_name).open("wb")
    full_env = {**os.environ, "OPENCLAW_STATE_DIR": str(tmp_path / "state"), **env}
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=tmp_path)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()


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
