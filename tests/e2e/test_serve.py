"""``gateway serve`` as a real process: graceful shutdown on a real signal (also with a client
that stopped reading), several workers, and configuration reload."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.processes import BIN, free_port, process, wait_healthy
from tests.rawhttp import open_request, read_until

GRACE = 1.0


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream(Script(tokens=3)) as upstream:
        yield upstream


def write_config(path: Path, up: FakeUpstream, token: str = "t1", **extra: Any) -> None:
    config: dict[str, Any] = {
        "gateway": {
            "auth": {"token": token},
            "shutdownGraceSeconds": GRACE,
            "http": {
                "endpoints": {"chatCompletions": {"enabled": True}},
                "metrics": {"enabled": True},
            },
        },
        "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
        "agents": {"defaults": {"model": "fake/m"}},
        **extra,
    }
    path.write_text(json.dumps(config))


def serve_args(tmp_path: Path, up: FakeUpstream, *extra: str) -> tuple[Path, str, list[str]]:
    """A config file for ``up``, the server's URL, and the ``gateway serve`` command line."""
    config = tmp_path / "gw.json"
    write_config(config, up)
    port = free_port()
    command = [str(BIN / "gateway"), "serve", "--config", str(config), "--port", str(port), *extra]
    return config, f"http://127.0.0.1:{port}", command


async def chat(url: str, token: str = "t1", **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    async with httpx.AsyncClient(timeout=20) as client:
        return await client.post(
            f"{url}/v1/chat/completions", headers={"Authorization": f"Bearer {token}"}, json=body
        )


async def wait_exit(proc: subprocess.Popen[bytes], seconds: float) -> int:
    with trio.fail_after(seconds):
        while proc.poll() is None:  # noqa: ASYNC110 (an external process: nothing to await)
            await trio.sleep(0.02)
    return proc.returncode


async def test_sigterm_lets_short_runs_finish_and_aborts_long_ones(
    tmp_path: Path, up: FakeUpstream
) -> None:
    _, url, args = serve_args(tmp_path, up)
    with process(args, tmp_path) as proc:
        await wait_healthy(url, proc)
        short = Script(tokens=5, token_delay=0.1)  # 0.5 s: within the grace period
        long = Script(tokens=100_000, token_delay=0.01)
        up.enqueue(short, long)
        body = {"stream": True, "messages": [{"role": "user", "content": "x"}]}
        short_client = await open_request(url, body, token="t1")
        await (await up.wait_request(0)).wait_for("first_byte")
        long_client = await open_request(url, {**body, "user": "longrun"}, token="t1")
        await (await up.wait_request(1)).wait_for("first_byte")
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        finished = await read_until(short_client, b"data: [DONE]\n\n")
        assert b'"finish_reason":"stop"' in finished
        aborted = await read_until(long_client, b"data: [DONE]\n\n")
        assert b'"code":"shutdown"' in aborted
        with trio.fail_after(2):
            await up.requests[1].closed.wait()
        assert await wait_exit(proc, GRACE + 2.5) == 0
        assert time.monotonic() - signalled < GRACE + 2
        await short_client.aclose()
        await long_client.aclose()
    up.script = Script(tokens=1)
    with process(args, tmp_path, "second.log") as proc:
        await wait_healthy(url, proc)
        async with httpx.AsyncClient(headers={"Authorization": "Bearer t1"}) as client:
            page = await client.get(f"{url}/sessions/agent:main:openai-user:longrun/history")
        assert [m["status"] for m in page.json()["messages"]] == ["aborted", "aborted"]


async def test_exit_is_bounded_with_a_client_that_stopped_reading(
    tmp_path: Path, up: FakeUpstream
) -> None:
    _, url, args = serve_args(tmp_path, up)
    with process(args, tmp_path) as proc:
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
        assert await wait_exit(proc, GRACE + 4) == 0
        assert time.monotonic() - signalled < GRACE + 2
        # The stuck connection was broken, so the process left through its normal path.
        assert "broke 1 connection(s)" in (tmp_path / "stderr.log").read_text()
        assert not (tmp_path / "state" / "gateway" / "gateway.pid").exists()
        await stuck.aclose()


async def test_two_workers_share_the_port_and_sum_metrics(tmp_path: Path, up: FakeUpstream) -> None:
    _, url, args = serve_args(tmp_path, up, "--workers", "2")
    with process(args, tmp_path) as proc:
        await wait_healthy(url, proc)
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(chat, url)
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{url}/metrics")).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "gateway_http_requests_total"
                    and sample.labels["route"] == "/v1/chat/completions"
                ):
                    total += sample.value
        assert total == 20
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, GRACE + 5) == 0


async def test_reload_changes_agents_and_auth_without_dropping_streams(
    tmp_path: Path, up: FakeUpstream
) -> None:
    config, url, args = serve_args(tmp_path, up)
    with process(args, tmp_path) as proc:
        await wait_healthy(url, proc)
        up.enqueue(Script(tokens=40, token_delay=0.05))
        stream = await open_request(
            url, {"stream": True, "messages": [{"role": "user", "content": "x"}]}, token="t1"
        )
        await (await up.wait_request(0)).wait_for("first_byte")
        write_config(
            config,
            up,
            token="t2",
            agents={"defaults": {"model": "fake/m"}, "list": [{"id": "main"}, {"id": "ops"}]},
        )
        reload = await trio.run_process(
            [str(BIN / "gateway"), "reload", "--config", str(config)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={"OPENCLAW_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"},
        )
        assert reload.returncode == 0, reload.stderr
        with trio.fail_after(5):
            # The reload lands asynchronously in the other process.
            while (await chat(url, token="t2")).status_code != 200:  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert (await chat(url, token="t1")).status_code == 401
        assert (await chat(url, token="t2", model="openclaw:ops")).status_code == 200
        rest = await read_until(stream, b"data: [DONE]\n\n")
        assert b'"finish_reason":"stop"' in rest  # the open stream went on to its end
        await stream.aclose()
        # An invalid configuration is rejected and the running one stays.
        config.write_text('{gateway: {auth: {mode: "tokn"}}}')
        proc.send_signal(signal.SIGHUP)
        with trio.fail_after(5):
            while "reload rejected" not in (tmp_path / "stderr.log").read_text():  # noqa: ASYNC110
                await trio.sleep(0.05)
        assert (await chat(url, token="t2")).status_code == 200
