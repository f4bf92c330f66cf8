"""For ``bench.pg_scale``: several ``gateway serve`` processes on one store, and a closed-loop
streaming load spread over them that times every answer's first token.

``open_gateways`` starts N single-worker ``gateway serve`` processes, each on its own port:
on SQLite they share one state directory (``gateway.store.shared: true``), on PostgreSQL one
database (``gateway.store.url``), each then with a state directory of its own. They are
reported ready once ``/readyz`` answers 200 (the store reachable and migrated).

``closed_loop`` runs ``concurrency`` clients (keep-alive HTTP/1.1, ``bench.client``); client
``w`` sends its ``k``-th request to target ``(w + k) % N``, so every connection's requests
take turns over the processes. A ``Bodies`` decides each request's body: stateless (always
the same) or stateful (``user`` set to one of ``sessions`` keys of the client's own, the
``k``-th request on key ``k % sessions``; with an odd ``sessions`` a session's turns move
between the processes too, and a session never has two requests at once).
``sessions_stored`` counts afterwards the sessions a store holds.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bench.client import Endpoint, H11Client, chat_body, headers_for, tagged_text
from bench.common import DEFAULT_TOKEN, free_port, gateway_config, spawned, wait_healthy

KNOBS = {"tokens": 8, "token_delay": 0}
MAX_CONCURRENT = 256


@dataclass(frozen=True, slots=True)
class Gateways:
    endpoints: list[Endpoint]
    pids: list[int]
    state: Path  # the (first) state directory
    logs: list[Path]

    def log_errors(self) -> int:
        """ERROR lines in the processes' logs (a run can answer 200 and still fail to store its
        turn)."""
        return sum(
            1
            for log in self.logs
            for line in log.read_text(errors="replace").splitlines()
            if " ERROR " in line
        )


def store_config(upstream_url: str, store: dict[str, Any]) -> dict[str, Any]:
    """The benchmark gateway's configuration with ``gateway.store`` set to ``store``."""
    config = gateway_config(DEFAULT_TOKEN, upstream_url, max_concurrent=MAX_CONCURRENT)
    config["gateway"]["store"] = store
    return config


async def wait_ready(endpoint: Endpoint, process: trio.Process, seconds: float) -> None:
    """``/health`` then ``/readyz`` answer 200 (``RuntimeError`` past ``seconds``)."""
    await wait_healthy(endpoint, process, seconds)
    client = H11Client(endpoint)
    try:
        with trio.fail_after(seconds):
            while True:
                if (await client.request("GET", "/readyz", {})).status == 200:
                    return
                await trio.sleep(0.05)
    finally:
        await client.aclose()


@asynccontextmanager
async def open_gateways(
    count: int, store: dict[str, Any], upstream_url: str, tmp: Path, logs: Path, name: str
) -> AsyncIterator[Gateways]:
    """``count`` ``gateway serve`` processes on the store ``store`` (``{"shared": true}`` or
    ``{"url": ...}``), stopped when the block ends."""
    root = tmp / name
    root.mkdir()
    config_path = root / "openclaw.json"
    config_path.write_text(json.dumps(store_config(upstream_url, store), indent=2))
    async with AsyncExitStack() as stack:
        started: list[tuple[Endpoint, trio.Process, Path]] = []
        for n in range(count):
            state = root / ("state" if "shared" in store else f"state-{n}")
            state.mkdir(exist_ok=True)
            port = free_port()
            cmd = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config_path)]
            cmd += ["--port", str(port)]
            env = {"OPENCLAW_STATE_DIR": str(state), "HOME": str(root)}
            log = logs / f"pg_scale-{name}-{n}-gateway.log"
            process = await stack.enter_async_context(spawned(cmd, log=log, env=env))
            started.append((Endpoint("127.0.0.1", port, ""), process, log))
        try:
            async with trio.open_nursery() as nursery:
                for endpoint, process, _ in started:
                    nursery.start_soon(wait_ready, endpoint, process, 60)
        except BaseException:
            for _, _, log in started:
                print(log.read_text(errors="replace")[-2000:], file=sys.stderr)
            raise
        yield Gateways(
            [e for e, _, _ in started],
            [p.pid for _, p, _ in started],
            root / ("state" if "shared" in store else "state-0"),
            [log for _, _, log in started],
        )


class Bodies:
    """Request bodies: ``body(client, k)`` for client ``client``'s ``k``-th request."""

    def __init__(
        self, model: str, *, sessions: int, prefix: str, extra: dict[str, Any] | None = None
    ) -> None:
        self.sessions = sessions
        text = tagged_text("pg", KNOBS)
        extra = extra or {}
        self._plain = chat_body(model, text, stream=True, **extra)
        self._prefix = prefix
        self._model = model
        self._text = text
        self._extra = extra
        self._cache: dict[tuple[int, int], bytes] = {}

    def body(self, client: int, k: int) -> bytes:
        if not self.sessions:
            return self._plain
        slot = (client, k % self.sessions)
        if slot not in self._cache:
            user = f"{self._prefix}-{client}-{slot[1]}"
            self._cache[slot] = chat_body(
                self._model, self._text, stream=True, user=user, **self._extra
            )
        return self._cache[slot]


@dataclass(slots=True)
class Block:
    ttft: list[float]  # seconds, answers started after the warm-up
    total: list[float]
    failures: int
    seconds: float  # the measured window


async def closed_loop(
    endpoints: list[Endpoint],
    path: str,
    headers: dict[str, str],
    bodies: Callable[[int, int], bytes],
    concurrency: int,
    warmup: float,
    seconds: float,
) -> Block:
    """``concurrency`` closed-loop clients for ``warmup + seconds``; answers started during
    the warm-up are not counted."""
    block = Block([], [], 0, seconds)
    measure_from = time.monotonic() + warmup
    stop_at = trio.current_time() + warmup + seconds

    async def client(w: int) -> None:
        connections = [H11Client(e) for e in endpoints]
        k = 0
        try:
            while trio.current_time() < stop_at:
                target = connections[(w + k) % len(connections)]
                body = bodies(w, k)
                k += 1
                try:
                    answer = await target.request("POST", path, headers, body)
                except (OSError, ConnectionError):
                    block.failures += 1
                    await target.aclose()
                    continue
                if answer.started < measure_from:
                    continue
                if answer.status != 200 or answer.first_content is None:
                    block.failures += 1
                    continue
                block.ttft.append(answer.first_content - answer.started)
                block.total.append(answer.ended - answer.started)
        finally:
            for connection in connections:
                await connection.aclose()

    with trio.move_on_after(warmup + seconds + 30):
        async with trio.open_nursery() as nursery:
            for w in range(concurrency):
                nursery.start_soon(client, w)
    block.seconds = max(time.monotonic() - measure_from, 1e-9)
    return block


def gateway_headers() -> dict[str, str]:
    return headers_for(DEFAULT_TOKEN)


def sessions_stored(cluster: Any, gateways: Gateways, url: str | None) -> int:
    """How many sessions of the ``scale`` blocks the store holds (a check that stateful
    requests reached it: ``--concurrency`` x ``--sessions`` expected)."""
    # Keys are "agent:main:openai-user:<user>"; the users of the scale blocks start "scale".
    where = "WHERE key LIKE '%user:scale%'"
    if url is not None:
        name = url.rsplit("/", 1)[1]
        return int(cluster.sql(name, f"SELECT count(*) FROM gateway_sessions {where}"))
    with sqlite3.connect(gateways.state / "gateway" / "sessions.sqlite3") as connection:
        return int(connection.execute(f"SELECT count(*) FROM sessions {where}").fetchone()[0])
