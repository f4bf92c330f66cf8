"""Disconnect soak: hundreds of requests through the real server, the real SQLite store and the
fake upstream, many of them abandoned at random points in every phase (queued behind
``maxConcurrent``, waiting for their session's lane, before the first token, mid-stream, while a
non-streaming reply is collected), by FIN, RST or half-close, mixed with requests read to the
end, with in-process and with shared (SQLite) admission. Afterwards nothing is left: no run, no
lane or ticket, no upstream request in flight (every
abandoned one closed, only idle keep-alive connections open, none after the pool closes), no
trio task beyond the idle server's, memory back near where it was; and every reply a client got
in full is in its transcript as ``complete``.

``GATEWAY_SOAK_REQUESTS`` (default 500) and ``GATEWAY_SOAK_SEED`` (default: random, printed)
scale and replay it.
"""

from __future__ import annotations

import gc
import os
import random
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gateway.agents.observer import RunObserver
from gateway.agents.run import Ending, Phase, Run
from gateway.agents.runtime import AgentRuntime
from gateway.sessions.admission import Admission, LocalAdmission
from gateway.sessions.shared_admission import SharedAdmission
from gateway.sessions.sqlite import SQLiteTranscripts
from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.hardening.support import read_response, rss_bytes
from tests.harness import Server, start_server, wait_for
from tests.rawhttp import open_request, read_until

MAX_CONCURRENT = 4
KEEP_ALIVE = 1  # Hypercorn's keep_alive_timeout here (5 s by default)
IDLE_CONNECTION = "trio._highlevel_serve_listeners._run_handler"
IDLE_TIMER = "hypercorn.trio.tcp_server.TCPServer._idle_timeout"
CLIENTS = 24
USERS = [f"user{i}" for i in range(6)]
ACTIONS = [
    "complete",
    "complete",
    "immediately",
    "delay",
    "delay",
    "before_first_token",
    "mid_stream",
    "half_close",
]


@dataclass(frozen=True)
class Planned:
    number: int
    stream: bool
    user: str | None
    action: str
    delay: float  # for "delay": seconds before hanging up
    chunks: int  # for "mid_stream": content chunks read before hanging up
    reset: bool  # hang up with RST instead of FIN

    @property
    def text(self) -> str:
        return f"request {self.number}"


def plan(rng: random.Random, count: int) -> list[Planned]:
    out = []
    for number in range(count):
        action = rng.choice(ACTIONS)
        stream = True if action == "mid_stream" else rng.random() < 0.6
        out.append(
            Planned(
                number,
                stream,
                rng.choice(USERS) if rng.random() < 0.5 else None,
                action,
                rng.uniform(0, 0.08),
                rng.randint(1, 15),
                rng.random() < 0.3,
            )
        )
    return out


class PhaseRecorder:
    """The runtime's observer, passed through, recording each run's outcome and, for a run
    cancelled while queued, what it was waiting for."""

    def __init__(self, inner: RunObserver, runtime: AgentRuntime) -> None:
        self.inner = inner
        self.runtime = runtime
        self.outcomes: Counter[str] = Counter()
        self.cancelled_by_mode: Counter[str] = Counter()

    def run_queued(self, run: Run) -> None:
        self.inner.run_queued(run)

    def run_started(self, run: Run) -> None:
        self.inner.run_started(run)

    def first_token(self, run: Run) -> None:
        self.inner.first_token(run)

    def upstream_error(self, provider: str, kind: str) -> None:
        self.inner.upstream_error(provider, kind)

    def run_ended(self, run: Run) -> None:
        self.inner.run_ended(run)
        assert run.outcome is not None
        ending, phase = run.outcome.ending, run.outcome.phase
        outcome = ending.value if ending is not Ending.ABORTED else f"aborted:{phase.value}"
        if ending is Ending.ABORTED and phase is Phase.QUEUED:
            lane_busy = any(
                other.phase is not Phase.QUEUED and other is not run
                for other in self.runtime.active_runs(run.session_key)
            )
            outcome += ":lane" if lane_busy else ":slot"
        self.outcomes[outcome] += 1
        if ending is Ending.ABORTED:
            self.cancelled_by_mode["stream" if run.request.stream else "plain"] += 1


def tasks_under(nursery: trio.Nursery) -> Counter[str]:
    """The names of every task below ``nursery``, counted."""
    names: Counter[str] = Counter()

    def walk(task: trio.lowlevel.Task) -> None:
        names[task.name] += 1
        for child_nursery in task.child_nurseries:
            for child in child_nursery.child_tasks:
                walk(child)

    for task in nursery.child_tasks:
        walk(task)
    return names


async def upstream_received(up: FakeUpstream, text: str) -> None:
    """Wait until the upstream has the request whose last message is ``text``."""
    seen = 0
    while True:
        for record in up.requests[seen:]:
            if record.body["messages"][-1]["content"] == text:
                return
        seen = len(up.requests)
        await up.wait_request(seen)


async def run_one(server: Server, up: FakeUpstream, item: Planned, acked: list[Planned]) -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": item.text}],
        "stream": item.stream,
    }
    if item.user:
        body["user"] = item.user
    stream = await open_request(server.url, body)
    if item.reset:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        if item.action == "complete":
            with trio.fail_after(30):
                if item.stream:
                    data = await read_until(stream, b"data: [DONE]\n\n", limit=1 << 22)
                    assert data.startswith(b"HTTP/1.1 200"), data[:200]
                    assert b'"error"' not in data, data[-500:]
                else:
                    response = await read_response(stream)
                    assert response is not None and response.status == 200, response
            acked.append(item)
        elif item.action == "delay":
            await trio.sleep(item.delay)  # a random moment: whatever phase the run is in
        elif item.action == "before_first_token":
            with trio.fail_after(30):
                await upstream_received(up, item.text)  # the first token is 20 ms away
        elif item.action == "mid_stream":
            with trio.fail_after(30):
                await read_until(stream, f'"content":" w{item.chunks}"'.encode(), limit=1 << 22)
        elif item.action == "half_close":
            await stream.send_eof()
            with trio.move_on_after(0.5):
                await stream.receive_some(1)  # the server's FIN, at once
    finally:
        await stream.aclose()


@pytest.mark.parametrize("admission_kind", ["local", "shared"])
async def test_disconnect_soak(tmp_path: Path, admission_kind: str) -> None:
    seed = int(os.environ.get("GATEWAY_SOAK_SEED", random.randrange(2**32)))
    count = int(os.environ.get("GATEWAY_SOAK_REQUESTS", 500))
    print(f"soak seed {seed} ({count} requests, {admission_kind} admission)")
    rng = random.Random(seed)
    script = Script(tokens=20, token_delay=0.002, first_token_delay=0.02)
    store = SQLiteTranscripts(tmp_path / "gateway")
    admission: Admission = (
        LocalAdmission(MAX_CONCURRENT)
        if admission_kind == "local"
        else SharedAdmission(tmp_path / "gateway", max_concurrent=MAX_CONCURRENT)
    )
    async with open_fake_upstream(script) as up, trio.open_nursery() as server_nursery:
        config = {
            "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
            "agents": {
                "defaults": {
                    "model": "fake/m",
                    "maxConcurrent": MAX_CONCURRENT,
                    "historyLimit": 8,
                }
            },
        }
        server = await start_server(
            server_nursery,
            config,
            store=store,
            admission=admission,
            hypercorn_options={"keep_alive_timeout": KEEP_ALIVE},
        )
        runtime = server.gateway.runtime
        recorder = PhaseRecorder(runtime.observer, runtime)
        runtime.observer = recorder
        # Warm up (imports, pool, the store's files), then take the baselines.
        warm = [Planned(-i, i % 2 == 0, USERS[0], "complete", 0, 0, False) for i in range(1, 5)]
        for item in warm:
            await run_one(server, up, item, [])
        await trio.testing.wait_all_tasks_blocked()
        baseline_tasks = tasks_under(server_nursery)

        # Two halves: the second must not grow memory beyond the first (the test's own records
        # of the fake upstream are dropped in between; prompts are bounded by historyLimit).
        acked: list[Planned] = []
        planned = plan(rng, count)
        rss: list[int] = []

        async def client(work: Iterator[Planned]) -> None:
            for item in work:  # shared: each client takes the next planned request
                await run_one(server, up, item, acked)

        for half in (planned[: count // 2], planned[count // 2 :]):
            work = iter(half)
            with trio.fail_after(30 + count / 20):
                async with trio.open_nursery() as clients:
                    for _ in range(CLIENTS):
                        clients.start_soon(client, work)
                await runtime.wait_idle()
                await check_nothing_left(server, store, up, server_nursery, baseline_tasks)
            await check_transcripts(store, acked, seed)
            up.requests.clear()
            up.log.clear()
            gc.collect()
            rss.append(rss_bytes())
        outcomes = recorder.outcomes
        print("outcomes", dict(outcomes), "rss growth MiB", (rss[1] - rss[0]) / 2**20)
        # Every phase was hit (a plan of 500 makes each near certain; the seed replays it).
        for outcome in ("complete", "aborted:queued:slot", "aborted:queued:lane",
                        "aborted:waiting", "aborted:streaming"):  # fmt: skip
            assert outcomes[outcome] > 0, (outcome, dict(outcomes), seed)
        assert not [o for o in outcomes if o.startswith("failed")], (dict(outcomes), seed)
        modes = recorder.cancelled_by_mode
        assert modes["stream"] > 0 and modes["plain"] > 0, (dict(modes), seed)
        assert rss[1] - rss[0] < 16 * 2**20, (rss, seed)

        # Closing the pool closes the idle keep-alive connections too: then none is left.
        server.stop.set()
        await wait_for(lambda: up.connections_open == 0, 10)


async def check_nothing_left(
    server: Server,
    store: SQLiteTranscripts,
    up: FakeUpstream,
    server_nursery: trio.Nursery,
    baseline_tasks: Counter[str],
) -> None:
    stats = server.gateway.runtime.statistics()
    assert (stats.active_runs, stats.queued_runs) == (0, 0)
    lanes = server.gateway.runtime.admission.statistics()
    assert lanes.sessions_held == lanes.sessions_waiting == 0, lanes
    assert lanes.slots_held == lanes.slots_waiting == 0, lanes
    if isinstance(server.gateway.runtime.admission, SharedAdmission):
        assert await server.gateway.runtime.admission.tickets() == []
    # Upstream: no request in flight; every abandoned one was closed by the gateway.
    for record in up.requests:
        await record.finished.wait()
        if record.time_of("response_end") is None:
            await record.closed.wait()
    await trio.testing.wait_all_tasks_blocked(0.05)
    idle = {r.connection for r in up.requests if not r.closed.is_set()}
    for record in up.requests:
        if record.connection in idle:
            assert record.time_of("response_end") is not None, record.events
    assert up.connections_open == len(idle) <= 32  # the pool's keep-alive bound
    # Beyond the idle server's tasks, only connections in Hypercorn's keep-alive wait may be
    # left: a client that resets right after a complete response leaves its connection task
    # until keep_alive_timeout (Hypercorn's trio TCPServer waits for its idle timer after a
    # read error). No gateway task, and those go too.
    extra = tasks_under(server_nursery) - baseline_tasks
    assert set(extra) <= {IDLE_CONNECTION, IDLE_TIMER}, extra
    assert extra[IDLE_CONNECTION] == extra[IDLE_TIMER], extra
    await wait_for(lambda: not tasks_under(server_nursery) - baseline_tasks, KEEP_ALIVE + 2)


async def check_transcripts(store: SQLiteTranscripts, acked: list[Planned], seed: int) -> None:
    """Every reply a client received in full is stored as complete; nothing as an error."""
    statuses: dict[str, str] = {}
    for user in USERS:
        page = await store.history(f"agent:main:openai-user:{user}", 1000, None)
        for entry in page.entries if page else ():
            content = entry.message.get("content")
            if entry.message["role"] == "user" and isinstance(content, str):
                statuses[content] = entry.status
            assert entry.status in ("complete", "aborted"), (entry, seed)
    for item in acked:
        if item.user:
            assert statuses.get(item.text) == "complete", (item, statuses.get(item.text), seed)
