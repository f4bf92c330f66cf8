"""Live history across processes: a follower on one ``gateway serve`` process sees the turns
another process records, in order, none missed or repeated, on a shared SQLite state
directory (the other process's commit reaches it through the store's poll) and on
PostgreSQL (through the other host's notification); a SIGTERM ends a follower's stream at once."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.sessions.postgres.transcripts import POLL_SECONDS as PG_POLL
from gateway.sessions.sqlite import POLL_SECONDS as SQLITE_POLL
from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.history_client import LiveHistory, live_history
from tests.processes import BIN, free_port, process, wait_healthy

TOKEN = "live-token"
KEY = "agent:main:openai-user:watched"


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream(Script(tokens=3)) as upstream:
        yield upstream


def write_config(tmp_path: Path, up: FakeUpstream, store: dict[str, Any]) -> Path:
    config = {
        "gateway": {
            "auth": {"token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            "store": store,
        },
        "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
        "agents": {"defaults": {"model": "fake/m"}},
    }
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(config))
    return path


@contextlib.contextmanager
def two_servers(tmp_path: Path, config: Path, **env: str) -> Iterator[list[tuple[str, Any]]]:
    """Two ``gateway serve`` processes; ``env`` may give each its own state directory
    (``OPENCLAW_STATE_DIR`` with ``{n}``)."""
    ports = [free_port(), free_port()]
    with contextlib.ExitStack() as stack:
        servers = []
        for n, port in enumerate(ports):
            own = {name: value.format(n=n) for name, value in env.items()}
            args = [str(BIN / "gateway"), "serve", "--port", str(port)]
            proc = stack.enter_context(
                process(args, tmp_path, f"server{n}.log", OPENCLAW_CONFIG_PATH=str(config), **own)
            )
            servers.append((f"http://127.0.0.1:{port}", proc))
        yield servers


async def chat(url: str, text: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {TOKEN}", "x-openclaw-message-channel": "web"},
            json={"messages": [{"role": "user", "content": text}], "user": "watched"},
        )
        assert answer.status_code == 200, answer.text


async def follow_across(writer: str, live: LiveHistory) -> list[float]:
    """Three turns written through ``writer``: ``live`` (on the other process) gets their six
    messages in order and nothing else; returns each turn's delay (its answer to its user
    message on ``live``)."""
    snapshot = (await live.event()).data
    assert [m["content"] for m in snapshot["messages"]] == ["before"]
    delays = []
    for n in range(3):
        await chat(writer, f"turn {n}")
        answered = time.monotonic()
        with trio.fail_after(10):
            got = await live.messages(2)
        delays.append(time.monotonic() - answered)
        assert [m["messageSeq"] for m in got] == [3 + 2 * n, 4 + 2 * n]
        assert [m["message"]["role"] for m in got] == ["user", "assistant"]
        assert got[0]["message"]["content"] == f"turn {n}"
        assert {m["message"]["channel"] for m in got} == {"web"}
    return delays


async def test_another_process_on_one_state_directory(tmp_path: Path, up: FakeUpstream) -> None:
    config = write_config(tmp_path, up, {"shared": True})
    with two_servers(tmp_path, config) as [(a, proc_a), (b, proc_b)]:
        await wait_healthy(a, proc_a)
        await wait_healthy(b, proc_b)
        await chat(a, "before")
        async with live_history(a, KEY, TOKEN, limit=1) as live:
            delays = await follow_across(b, live)
            # SIGTERM ends the stream at once (nothing to wait for), and the server exits
            # without waiting out its grace period (3 s) for the follower.
            signalled = time.monotonic()
            proc_a.send_signal(signal.SIGTERM)
            with trio.fail_after(2):
                assert await live.block() is None
            with trio.fail_after(3):
                while proc_a.poll() is None:  # noqa: ASYNC110 (another process: nothing to await)
                    await trio.sleep(0.02)
            assert proc_a.returncode == 0
            assert time.monotonic() - signalled < 2.0
    # Through the poll: one interval at most, plus the reads (a loaded CI machine: margin).
    assert max(delays) < SQLITE_POLL + 1.0, delays


async def test_another_host_on_postgres(tmp_path: Path, up: FakeUpstream, pg_url: str) -> None:
    config = write_config(tmp_path, up, {"url": pg_url})
    with two_servers(tmp_path, config, OPENCLAW_STATE_DIR=str(tmp_path / "state{n}")) as [
        (a, proc_a),
        (b, proc_b),
    ]:
        await wait_healthy(a, proc_a)
        await wait_healthy(b, proc_b)
        await chat(b, "before")
        async with live_history(a, KEY, TOKEN, limit=1) as live:
            delays = await follow_across(b, live)
    # Through the notification, well before the safety-net poll would have found it.
    assert max(delays) < PG_POLL, delays
