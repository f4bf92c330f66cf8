"""``hypercorn -k trio gateway.app:app`` as a real process keeps the promises ``gateway serve``
keeps: a shutdown that ends open streams and WebSockets properly and is bounded with a client
that stopped reading, workers that do not outlive their master, and a failing exit status when
the app cannot start."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.e2e.test_serve import wait_exit
from tests.processes import BIN, free_port, group_members, process, wait_healthy
from tests.rawhttp import open_request, read_until
from tests.ws.wsclient import Operator

GRACE = 0.5
GRACEFUL_TIMEOUT = 2  # Hypercorn takes whole seconds


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream(Script(tokens=3)) as upstream:
        yield upstream


def hypercorn_args(tmp_path: Path, up: FakeUpstream, *extra: str) -> tuple[str, list[str], dict]:
    """The URL, the command line and the environment of a Hypercorn launch against ``up``."""
    config: dict[str, Any] = {
        "gateway": {
            "auth": {"token": "t1"},
            "shutdownGraceSeconds": GRACE,
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
        "agents": {"defaults": {"model": "fake/m"}},
    }
    path = tmp_path / "gw.json"
    path.write_text(json.dumps(config))
    port = free_port()
    args = [
        str(BIN / "hypercorn"), "-k", "trio", "--bind", f"127.0.0.1:{port}",
        "--graceful-timeout", str(GRACEFUL_TIMEOUT), *extra, "gateway.app:app",
    ]  # fmt: skip
    return f"http://127.0.0.1:{port}", args, {"OPENCLAW_CONFIG_PATH": str(path)}


def workers_of(master: int) -> list[int]:
    """The master's Hypercorn workers (its children other than multiprocessing's tracker)."""
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return []
    found = []
    for pid in map(int, children):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in command:
            found.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_ends_streams_and_websockets_like_gateway_serve(
    tmp_path: Path, up: FakeUpstream, signum: signal.Signals
) -> None:
    url, args, env = hypercorn_args(tmp_path, up)
    with process(args, tmp_path, **env) as proc:
        await wait_healthy(url, proc)
        up.enqueue(Script(tokens=100_000, token_delay=0.01))
        body = {"stream": True, "user": "longrun", "messages": [{"role": "user", "content": "x"}]}
        client = await open_request(url, body, token="t1")
        upstream = await up.wait_request(0)
        await upstream.wait_for("first_byte")
        operator = await Operator.open(url.replace("http", "ws"), token="t1")
        signalled = time.monotonic()
        proc.send_signal(signum)
        ended = await read_until(client, b"data: [DONE]\n\n", limit=1 << 26)
        assert b'"code":"shutdown"' in ended
        with trio.fail_after(GRACEFUL_TIMEOUT):
            shutdown = await operator.event("shutdown")
            closed = await operator.ws.wait_closed()
        assert shutdown["payload"]["reason"] == "gateway stopping"
        assert closed.code == 1012
        with trio.fail_after(2):
            await up.wait_closed(0)
        assert await wait_exit(proc, GRACEFUL_TIMEOUT + 2) == 0
        assert time.monotonic() - signalled < GRACEFUL_TIMEOUT + 2
        await client.aclose()
    up.script = Script(tokens=1)
    with process(args, tmp_path, "second.log", **env) as proc:
        await wait_healthy(url, proc)
        async with httpx.AsyncClient(headers={"Authorization": "Bearer t1"}) as http:
            page = await http.get(f"{url}/sessions/agent:main:openai-user:longrun/history")
        assert [m["status"] for m in page.json()["messages"]] == ["aborted", "aborted"]
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, GRACEFUL_TIMEOUT + 2) == 0


async def test_exit_is_bounded_with_a_client_that_stopped_reading(
    tmp_path: Path, up: FakeUpstream
) -> None:
    url, args, env = hypercorn_args(tmp_path, up)
    with process(args, tmp_path, **env) as proc:
        await wait_healthy(url, proc)
        up.enqueue(Script(tokens=500_000))  # ~75 MB of SSE: far beyond the socket buffers
        body = {"stream": True, "messages": [{"role": "user", "content": "flood"}]}
        stuck = await open_request(url, body, token="t1")
        stuck.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with trio.fail_after(10):
            await (await up.wait_request(0)).wait_for("first_byte")
        await trio.sleep(0.5)  # let the kernel buffers fill up: the client never reads
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, GRACEFUL_TIMEOUT + 4) == 0
        assert time.monotonic() - signalled < GRACEFUL_TIMEOUT + 2
        assert "broke 1 connection(s)" in (tmp_path / "stderr.log").read_text()
        await stuck.aclose()


async def test_workers_exit_when_the_master_is_killed(tmp_path: Path, up: FakeUpstream) -> None:
    url, args, env = hypercorn_args(tmp_path, up, "--workers", "2")
    with process(args, tmp_path, **env) as proc:
        await wait_healthy(url, proc)
        workers = workers_of(proc.pid)
        assert len(workers) == 2
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        with trio.fail_after(3):
            while any(alive(pid) for pid in workers):  # noqa: ASYNC110 (other processes)
                await trio.sleep(0.01)
        assert time.monotonic() - killed < 1.5
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(f"{url}/healthz")
        assert "the parent process is gone" in (tmp_path / "stderr.log").read_text()
        assert group_members(proc.pid) == []


async def test_gateway_serve_workers_exit_when_the_supervisor_is_killed(
    tmp_path: Path, up: FakeUpstream
) -> None:
    url, _, env = hypercorn_args(tmp_path, up)
    port = url.rsplit(":", 1)[1]
    args = [str(BIN / "gateway"), "serve", "--port", port, "--workers", "2"]
    with process(args, tmp_path, **env) as proc:
        await wait_healthy(url, proc)
        workers = workers_of(proc.pid)
        assert len(workers) == 2
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        with trio.fail_after(3):
            while any(alive(pid) for pid in workers):  # noqa: ASYNC110 (other processes)
                await trio.sleep(0.01)
        assert time.monotonic() - killed < 1.5


@pytest.mark.parametrize("worker_class", ["trio", "asyncio"])
def test_a_failed_start_exits_non_zero(tmp_path: Path, worker_class: str) -> None:
    bad = tmp_path / "bad.json5"
    bad.write_text('{gateway: {auth: {mode: "tokn"}}}')
    args = [
        str(BIN / "hypercorn"), "-k", worker_class, "--bind", f"127.0.0.1:{free_port()}",
        "gateway.app:app",
    ]  # fmt: skip
    with process(args, tmp_path, OPENCLAW_CONFIG_PATH=str(bad)) as proc:
        status = proc.wait(timeout=20)
    assert status != 0
    assert "gateway: cannot start: " in (tmp_path / "stderr.log").read_text()
