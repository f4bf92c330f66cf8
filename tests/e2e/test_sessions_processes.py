"""Sessions across real server processes sharing one state directory: the lane holds across
processes (two servers, and ``hypercorn -w 2``), and a SIGKILL mid-run loses no completed turn."""

from __future__ import annotations

import itertools
import json
import signal
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.processes import BIN, free_port, process, wait_healthy

TOKEN = "proc-token"


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream(Script(tokens=20, token_delay=0.01)) as upstream:
        yield upstream


def write_config(tmp_path: Path, up: FakeUpstream) -> Path:
    config = {
        "gateway": {
            "auth": {"token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            # Two independently started servers share the state directory.
            "store": {"shared": True},
        },
        "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
        "agents": {"defaults": {"model": "fake/m"}},
    }
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(config))
    return path


async def chat(url: str, text: str, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"messages": [{"role": "user", "content": text}], **body},
        )


def assert_no_overlap(up: FakeUpstream) -> None:
    """No upstream request started before the previous one (in arrival order) had ended."""
    spans = []
    for record in up.requests:
        names = {entry.name: entry.at for entry in record.events}
        spans.append((names["received"], names.get("response_end", names.get("closed", 0.0))))
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two runs of one session reached the upstream at once"


async def test_lane_holds_across_two_server_processes(tmp_path: Path, up: FakeUpstream) -> None:
    config = write_config(tmp_path, up)
    ports = [free_port(), free_port()]
    env = {"OPENCLAW_CONFIG_PATH": str(config)}
    with (
        process(
            [str(BIN / "gateway"), "serve", "--port", str(ports[0])], tmp_path, "a.log", **env
        ) as a,
        process(
            [str(BIN / "gateway"), "serve", "--port", str(ports[1])], tmp_path, "b.log", **env
        ) as b,
    ):
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        await wait_healthy(urls[0], a)
        await wait_healthy(urls[1], b)
        async with trio.open_nursery() as nursery:
            for i in range(4):
                nursery.start_soon(partial(chat, urls[i % 2], f"m{i}", user="shared"))
        assert len(up.requests) == 4
        assert_no_overlap(up)
        # Different sessions do run at once.
        up.requests.clear()
        async with trio.open_nursery() as nursery:
            for i in range(2):
                nursery.start_soon(partial(chat, urls[i], "x", user=f"user{i}"))
        first, second = sorted(up.requests, key=lambda r: r.events[0].at)
        first_end = next(e.at for e in first.events if e.name == "response_end")
        assert second.events[0].at < first_end
        async with httpx.AsyncClient() as client:
            page = await client.get(
                f"{urls[1]}/sessions/agent:main:openai-user:shared/history",
                headers={"Authorization": f"Bearer {TOKEN}"},
            )
        assert len(page.json()["messages"]) == 8


async def test_lane_holds_with_two_hypercorn_workers(tmp_path: Path, up: FakeUpstream) -> None:
    config = write_config(tmp_path, up)
    port = free_port()
    args = [
        str(BIN / "hypercorn"),
        "-k",
        "trio",
        "-w",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "gateway.app:app",
    ]
    with process(args, tmp_path, OPENCLAW_CONFIG_PATH=str(config)) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(url, proc)
        async with trio.open_nursery() as nursery:
            for i in range(6):
                nursery.start_soon(partial(chat, url, f"m{i}", user="w2"))
        assert len(up.requests) == 6
        assert_no_overlap(up)


async def test_sigkill_mid_run_keeps_every_completed_turn(tmp_path: Path, up: FakeUpstream) -> None:
    config = write_config(tmp_path, up)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(BIN / "gateway"), "serve", "--port", str(port)]
    env = {"OPENCLAW_CONFIG_PATH": str(config)}
    with process(args, tmp_path, "first.log", **env) as first:
        await wait_healthy(url, first)
        for i in range(3):
            assert (await chat(url, f"turn {i}", user="durable")).status_code == 200
        up.script = Script(tokens=10_000, token_delay=0.01)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(chat, url, "interrupted", user="durable"))
            record = await up.wait_request(3)
            await record.wait_for("first_byte")
            first.send_signal(signal.SIGKILL)
            first.wait()
            nursery.cancel_scope.cancel()
    up.script = Script(tokens=2)
    with process(args, tmp_path, "second.log", **env) as second:
        await wait_healthy(url, second)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            page = await client.get(f"{url}/sessions/agent:main:openai-user:durable/history")
        messages = page.json()["messages"]
        assert [m["content"] for m in messages if m["role"] == "user"][:3] == [
            "turn 0",
            "turn 1",
            "turn 2",
        ]
        assert all(m["status"] == "complete" for m in messages[:6])
        # The dead process's lane does not block the session.
        with trio.fail_after(10):
            assert (await chat(url, "after restart", user="durable")).status_code == 200
