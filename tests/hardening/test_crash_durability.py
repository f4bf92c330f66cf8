"""Durability under crash: ``gateway serve`` as a real process, several clients driving stateful
runs (streaming and not) against a fake upstream, SIGKILL at random moments, restart. Every turn
acknowledged to a client (a whole 200 JSON answer, or a stream that reached ``[DONE]`` without an
error) is in ``/sessions/<key>/history`` as ``complete``, in order, after every restart; the
store opens cleanly each time (the server gets ready, logs no error, its SQLite files pass
``PRAGMA integrity_check``) and a dead process's lanes do not hold up the next one's runs.

``GATEWAY_CRASH_SEED`` replays a run (the seed is printed).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.processes import BIN, free_port, process, wait_healthy

TOKEN = "crash-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
CLIENTS = 4
ROUNDS = 3


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream(Script(tokens=12, token_delay=0.004)) as upstream:
        yield upstream


@dataclass
class Client:
    """One user's conversation; ``acked`` are the turns the server answered in full."""

    number: int
    acked: list[str] = field(default_factory=list)
    sent: int = 0

    @property
    def key(self) -> str:
        return f"agent:main:openai-user:client{self.number}"

    async def talk(self, url: str, round_: int) -> None:
        """Send turns one after the other until the server goes away."""
        async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=20) as http:
            while True:
                text = f"c{self.number} r{round_} t{self.sent}"
                self.sent += 1
                stream = self.sent % 2 == 0
                body = {
                    "messages": [{"role": "user", "content": text}],
                    "user": f"client{self.number}",
                    "stream": stream,
                }
                try:
                    if await complete_answer(http, body, stream):
                        self.acked.append(text)
                except httpx.TransportError:
                    return  # the server died: this turn was not acknowledged


async def complete_answer(http: httpx.AsyncClient, body: dict[str, Any], stream: bool) -> bool:
    """Whether the answer arrived whole: a 200 JSON completion, or SSE up to ``[DONE]`` with
    no error event."""
    if not stream:
        response = await http.post("/v1/chat/completions", json=body)
        return response.status_code == 200 and response.json()["object"] == "chat.completion"
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            return False
        done = failed = False
        # Read to the end (an abandoned httpx stream leaves async generators to the GC).
        async for line in response.aiter_lines():
            done = done or line == "data: [DONE]"
            failed = failed or (line.startswith("data: ") and '"error"' in line)
    return done and not failed


def write_config(tmp_path: Path, up: FakeUpstream) -> Path:
    config = {
        "gateway": {
            "auth": {"token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
        "agents": {"defaults": {"model": "fake/m", "maxConcurrent": 3}},
    }
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(config))
    return path


async def wait_exit(proc: subprocess.Popen[bytes]) -> None:
    with trio.fail_after(10):
        while proc.poll() is None:  # noqa: ASYNC110 (an external process: nothing to await)
            await trio.sleep(0.01)


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


async def check_history(url: str, clients: list[Client]) -> None:
    """Every acknowledged turn is stored, complete, in the order it was acknowledged."""
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=10) as http:
        for client in clients:
            if not client.acked:
                continue
            response = await http.get(f"/sessions/{client.key}/history", params={"limit": 1000})
            assert response.status_code == 200, response.text
            messages = response.json()["messages"]
            assert response.json()["nextCursor"] is None
            status = {m["content"]: m["status"] for m in messages if m["role"] == "user"}
            missing = [t for t in client.acked if status.get(t) != "complete"]
            assert not missing, (missing, status)
            stored = [m["content"] for m in messages if m["role"] == "user"]
            assert [t for t in stored if t in client.acked] == client.acked
            for user_turn, reply in itertools.pairwise(messages):
                if user_turn["role"] == "user" and user_turn["content"] in client.acked:
                    assert reply["role"] == "assistant" and reply["status"] == "complete"
                    assert reply["runId"] == user_turn["runId"]
            # A killed process never got to write anything but whole turns.
            assert {m["status"] for m in messages} == {"complete"}, messages


async def test_sigkill_loses_no_acknowledged_turn(tmp_path: Path, up: FakeUpstream) -> None:
    seed = int(os.environ.get("GATEWAY_CRASH_SEED", random.randrange(2**32)))
    print(f"crash seed {seed}")
    rng = random.Random(seed)
    config = write_config(tmp_path, up)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(BIN / "gateway"), "serve", "--config", str(config), "--port", str(port)]
    clients = [Client(i) for i in range(CLIENTS)]
    state = tmp_path / "state" / "gateway"
    for round_ in range(ROUNDS):
        log = f"round{round_}.log"
        with process(args, tmp_path, log) as server:
            await wait_healthy(url, server)
            await check_history(url, clients)  # what the previous process acknowledged
            start = len(up.requests)
            async with trio.open_nursery() as load:
                for client in clients:
                    load.start_soon(client.talk, url, round_)
                # A random moment: after a random number of upstream requests, at a random
                # point of the last one (received, first byte, or some tokens in).
                record = await up.wait_request(start + rng.randint(4, 16))
                moment = rng.choice(["received", "first_byte", "response_end"])
                with trio.fail_after(10):
                    await record.wait_for(moment)
                server.send_signal(signal.SIGKILL)
                await wait_exit(server)
        text = (tmp_path / log).read_text()
        assert "Traceback" not in text and " ERROR " not in text, text[-3000:]
        for name in ("sessions.sqlite3", "lanes.sqlite3"):
            assert await trio.to_thread.run_sync(integrity, state / name) == "ok"
    assert sum(len(c.acked) for c in clients) >= ROUNDS * 2, [c.acked for c in clients]
    with process(args, tmp_path, "final.log") as server:
        await wait_healthy(url, server)
        await check_history(url, clients)
        # The dead processes' lanes hold nothing up.
        async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=10) as http:
            with trio.fail_after(10):
                for client in clients:
                    body = {"messages": [{"role": "user", "content": "after"}],
                            "user": f"client{client.number}"}  # fmt: skip
                    assert (await http.post("/v1/chat/completions", json=body)).status_code == 200
        server.send_signal(signal.SIGTERM)
        await wait_exit(server)
        assert server.returncode == 0
    for name in ("sessions.sqlite3", "lanes.sqlite3"):
        assert await trio.to_thread.run_sync(integrity, state / name) == "ok"
