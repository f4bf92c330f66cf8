"""Three gateway hosts (separate processes and state directories) sharing one PostgreSQL database:
what one host guarantees holds across them (issue: scale out across hosts on PostgreSQL)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.postgres import PASSWORD, Cluster, throwaway_cluster
from tests.processes import BIN, free_port, process, wait_healthy
from tests.rawhttp import open_request, read_until
from tests.ws.wsclient import Operator

TOKEN = "pg-hosts-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# A kill must end the run within 50 ms on a healthy database; the assertion leaves room for a
# loaded CI machine (bench/pg_admission.py measures the real figure).
KILL_LIMIT = 0.5


@dataclass
class Hosts:
    urls: list[str]
    procs: list[Any]
    logs: list[Path]

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs)


def write_config(tmp_path: Path, up: FakeUpstream, **defaults: Any) -> Path:
    config = {
        "gateway": {
            "auth": {"token": TOKEN},
            "http": {
                "heartbeatSeconds": 0.2,
                "metrics": {"enabled": True},
                "endpoints": {
                    "chatCompletions": {"enabled": True},
                    "responses": {"enabled": True},
                },
            },
            # ``${ENV}`` substitution works in the URL (GATEWAY_STORE_URL would win over it).
            "store": {"url": "${PG_HOSTS_URL}"},
        },
        "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
        "agents": {"defaults": {"model": "fake/m", **defaults}},
    }
    path = tmp_path / "openclaw.json"
    path.write_text(json.dumps(config))
    return path


@contextlib.contextmanager
def start_hosts(tmp_path: Path, config: Path, url: str, count: int = 3) -> Iterator[Hosts]:
    """``count`` hosts started at once (against a new database: the cold-start race)."""
    ports = [free_port() for _ in range(count)]
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                process(
                    [str(BIN / "gateway"), "serve", "--port", str(port)],
                    tmp_path,
                    f"host{i}.log",
                    OPENCLAW_CONFIG_PATH=str(config),
                    OPENCLAW_STATE_DIR=str(tmp_path / f"state{i}"),
                    PG_HOSTS_URL=url,
                )
            )
            for i, port in enumerate(ports)
        ]
        yield Hosts(
            [f"http://127.0.0.1:{port}" for port in ports],
            procs,
            [tmp_path / f"host{i}.log" for i in range(count)],
        )


async def wait_all(hosts: Hosts) -> None:
    async with trio.open_nursery() as nursery:
        for url, proc in zip(hosts.urls, hosts.procs, strict=True):
            nursery.start_soon(wait_healthy, url, proc)


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream(Script(tokens=5)) as upstream:
        yield upstream


async def chat(url: str, text: str, **body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{url}/v1/chat/completions",
            headers=AUTH,
            json={"model": "openclaw", "messages": [{"role": "user", "content": text}], **body},
        )


async def get(url: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(f"{url}{path}", headers=AUTH)


async def queued(url: str) -> int:
    """The host's ``gateway_runs_queued`` gauge."""
    text = (await get(url, "/metrics")).text
    for line in text.splitlines():
        if line.startswith("gateway_runs_queued"):
            return int(float(line.split()[-1]))
    raise AssertionError("no gateway_runs_queued in /metrics")


async def until(predicate: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    """Poll another process's state (nothing in this process to await) until ``predicate()``."""
    with trio.fail_after(seconds):
        while True:
            if await predicate():
                return
            await trio.sleep(0.02)


def queued_is(url: str, expected: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await queued(url) == expected

    return check


def ready(url: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await get(url, "/readyz")).status_code == 200

    return check


def overlaps(up: FakeUpstream, slack: float = 0.0) -> int:
    """The most upstream requests that were in progress at once. ``slack``: how much earlier
    than the fake logged it an answer may have reached the gateway (the fake logs its end once
    its own task runs again, which on a loaded machine can be after the next request came)."""
    marks = []
    for record in up.requests:
        start = record.time_of("received")
        end = record.time_of("response_end") or record.closed_at
        assert start is not None and end is not None
        marks += [(start, 1), (max(start, end - slack), -1)]
    most = current = 0
    for _, step in sorted(marks):
        current += step
        most = max(most, current)
    return most


def texts(record_body: Any) -> list[str]:
    return [m["content"] for m in record_body["messages"] if m["role"] == "user"]


async def test_cold_start_and_shared_state(tmp_path: Path, up: FakeUpstream, pg_url: str) -> None:
    config = write_config(tmp_path, up)
    with start_hosts(tmp_path, config, pg_url) as hosts:
        await wait_all(hosts)  # three hosts migrating one empty database at once
        a, b, c = hosts.urls
        assert (await chat(a, "one", user="shared")).status_code == 200
        assert (await chat(b, "two", user="shared")).status_code == 200
        # Host B sent host A's turn to the model.
        assert texts(up.requests[1].body) == ["one", "two"]
        key = "agent:main:openai-user:shared"
        pages = [(await get(url, f"/sessions/{key}/history")).json() for url in hosts.urls]
        assert pages[0] == pages[1] == pages[2]
        assert [m["role"] for m in pages[2]["messages"]] == ["user", "assistant"] * 2
        # Stored responses too: created on A, read and continued on C.
        async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
            created = await client.post(
                f"{a}/v1/responses", json={"model": "openclaw", "input": "remember"}
            )
            assert created.status_code == 200, created.text
            rid = created.json()["id"]
            fetched = await client.get(f"{c}/v1/responses/{rid}")
            assert fetched.status_code == 200
            assert fetched.json()["output"] == created.json()["output"]
            follow = await client.post(
                f"{c}/v1/responses",
                json={"model": "openclaw", "input": "again", "previous_response_id": rid},
            )
            assert follow.status_code == 200, follow.text
            assert texts(up.requests[-1].body) == ["remember", "again"]
            # WebSocket session admin on one host is seen by the others.
        operator = await Operator.open(c, token=TOKEN)
        listed = await operator.call("sessions.list", {})
        assert key in [s["key"] for s in listed["payload"]["sessions"]]
        reset = await operator.call("sessions.reset", {"key": key})
        assert reset["payload"]["reset"] is True
        await operator.ws.send_close()
        assert (await get(a, f"/sessions/{key}/history")).json()["messages"] == []


async def test_fifo_across_hosts_and_a_waiter_that_leaves(
    tmp_path: Path, up: FakeUpstream, pg_url: str
) -> None:
    up.script = Script(tokens=6, token_delay=0.05)
    up.enqueue(Script(tokens=40, token_delay=0.05))  # m0: long enough to queue behind
    config = write_config(tmp_path, up)
    with start_hosts(tmp_path, config, pg_url) as hosts:
        await wait_all(hosts)
        results: dict[int, httpx.Response] = {}

        async def send(i: int) -> None:
            results[i] = await chat(hosts.urls[i % 3], f"m{i}", user="fifo")

        left = trio.Event()

        async def waiter_that_leaves() -> None:
            # Streams on host B while queued: a heartbeat arrives, then it hangs up.
            body = {"messages": [{"role": "user", "content": "leaver"}], "user": "fifo"}
            stream = await open_request(hosts.urls[1], {**body, "stream": True}, token=TOKEN)
            await read_until(stream, b": ping\n\n")
            await stream.aclose()
            left.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, 0)
            await up.wait_request(0)
            nursery.start_soon(waiter_that_leaves)
            await until(queued_is(hosts.urls[1], 1))
            await left.wait()  # after a heartbeat
            await until(queued_is(hosts.urls[1], 0))
            for i in (1, 2, 3, 4):
                url = hosts.urls[i % 3]
                before = await queued(url)
                nursery.start_soon(send, i)
                await until(queued_is(url, before + 1))
        assert all(r.status_code == 200 for r in results.values())
        order = [texts(record.body)[-1] for record in up.requests]
        assert order == ["m0", "m1", "m2", "m3", "m4"], order  # the leaver never ran
        assert overlaps(up, slack=0.05) == 1


async def test_one_concurrency_cap_for_all_hosts(
    tmp_path: Path, up: FakeUpstream, pg_url: str
) -> None:
    up.script = Script(tokens=5, token_delay=0.04)
    config = write_config(tmp_path, up, maxConcurrent=2)
    with start_hosts(tmp_path, config, pg_url) as hosts:
        await wait_all(hosts)
        async with trio.open_nursery() as nursery:
            for i in range(9):
                nursery.start_soon(partial(chat, hosts.urls[i % 3], f"c{i}", user=f"cap{i}"))
        assert len(up.requests) == 9
        # Answers take 200 ms: a third run at once would overlap by far more than the slack.
        assert overlaps(up, slack=0.05) == 2


async def stream_until_first_token(
    url: str, key: str, lines: list[str], first: trio.Event, ended: trio.Event
) -> None:
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream(
            "POST",
            f"{url}/v1/chat/completions",
            headers={**AUTH, "x-openclaw-session-key": key},
            json={"messages": [{"role": "user", "content": "long"}], "stream": True},
        ) as response,
    ):
        async for line in response.aiter_lines():
            lines.append(line)
            if '"content"' in line:
                first.set()
    ended.set()


async def test_kill_and_abort_from_other_hosts(
    tmp_path: Path, up: FakeUpstream, pg_url: str
) -> None:
    up.script = Script(tokens=3000, token_delay=0.01)
    config = write_config(tmp_path, up)
    with start_hosts(tmp_path, config, pg_url) as hosts:
        await wait_all(hosts)
        for index, how in enumerate(("http", "ws")):
            key = f"kill-{how}"
            lines: list[str] = []
            first, ended = trio.Event(), trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    stream_until_first_token, hosts.urls[0], key, lines, first, ended
                )
                await first.wait()
                asked = time.monotonic()
                if how == "http":
                    async with httpx.AsyncClient(timeout=30, headers=AUTH) as client:
                        answer = await client.post(f"{hosts.urls[2]}/sessions/{key}/kill")
                    assert answer.json()["killed"] is True
                else:
                    operator = await Operator.open(hosts.urls[1], token=TOKEN)
                    answer_frame = await operator.call("chat.abort", {"sessionKey": key})
                    assert answer_frame["payload"]["aborted"] is True
                    await operator.ws.send_close()
                record = await up.wait_closed(index)
                assert record.closed_at is not None
                assert record.closed_at - asked < KILL_LIMIT, record.closed_at - asked
                await ended.wait()
            errors = [json.loads(line[6:]) for line in lines if '"error"' in line]
            assert errors and errors[-1]["error"]["code"] == "aborted", lines[-3:]
            history = (await get(hosts.urls[1], f"/sessions/{key}/history")).json()
            assert [m.get("aborted") for m in history["messages"]] == [True, True]


async def test_ws_follower_sees_runs_started_on_another_host(
    tmp_path: Path, up: FakeUpstream, pg_url: str
) -> None:
    up.script = Script(tokens=5, token_delay=0.01)
    config = write_config(tmp_path, up)
    with start_hosts(tmp_path, config, pg_url) as hosts:
        await wait_all(hosts)
        key = "agent:main:followed"
        follower = await Operator.open(hosts.urls[0], token=TOKEN)
        await follower.call("chat.history", {"sessionKey": key})
        sender = await Operator.open(hosts.urls[1], token=TOKEN)
        started = await sender.call(
            "chat.send", {"sessionKey": key, "message": "hello", "idempotencyKey": "far-1"}
        )
        assert started["ok"], started
        with trio.fail_after(10):
            deltas = [await follower.event("chat", state="delta")]
            final = await follower.event("chat", state="final")
        assert deltas[0]["payload"]["runId"] == "far-1"
        assert final["payload"]["runId"] == "far-1"
        assert final["payload"]["sessionKey"] == key
        for operator in (follower, sender):
            await operator.ws.send_close()


async def test_a_host_killed_mid_run_blocks_nothing(
    tmp_path: Path, up: FakeUpstream, pg_url: str
) -> None:
    up.script = Script(tokens=3000, token_delay=0.01)
    config = write_config(tmp_path, up, maxConcurrent=1)
    with start_hosts(tmp_path, config, pg_url) as hosts:
        await wait_all(hosts)
        lines: list[str] = []
        first, ended = trio.Event(), trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                stream_until_first_token, hosts.urls[0], "crash", lines, first, ended
            )
            await first.wait()
            # Host A holds the session's lane and the one slot; it dies without a word.
            up.script = Script(tokens=3)
            hosts.procs[0].kill()
            hosts.procs[0].wait()
            killed_at = time.monotonic()
            nursery.cancel_scope.cancel()
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(
                f"{hosts.urls[1]}/v1/chat/completions",
                headers={**AUTH, "x-openclaw-session-key": "crash"},
                json={"messages": [{"role": "user", "content": "after"}]},
            )
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - killed_at < 10


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster of this test's own (it is stopped and started)."""
    with throwaway_cluster() as cluster:
        yield cluster


async def test_database_outage_and_return(
    tmp_path: Path, up: FakeUpstream, own_cluster: Cluster
) -> None:
    url = own_cluster.database()
    config = write_config(tmp_path, up)
    with start_hosts(tmp_path, config, url, count=2) as hosts:
        await wait_all(hosts)
        a, b = hosts.urls
        assert (await chat(a, "before", user="outage")).status_code == 200
        own_cluster.stop("immediate")
        began = time.monotonic()
        stateful = await chat(b, "during", user="outage")
        assert time.monotonic() - began < 15
        assert stateful.status_code == 503, stateful.text
        assert stateful.headers["retry-after"].isdigit()
        assert stateful.json()["error"]["code"] == "store_unavailable"
        history = await get(a, "/sessions/agent:main:openai-user:outage/history")
        assert history.status_code == 503
        assert history.headers["retry-after"].isdigit()
        readiness = await get(a, "/readyz")
        assert readiness.status_code == 503
        # A stateless run needs no lane: this host's own cap admits it.
        stateless = await chat(a, "no session")
        assert stateless.status_code == 200, stateless.text
        metrics = (await get(b, "/metrics")).text
        own_cluster.start()
        await until(ready(a), seconds=20)
        await until(ready(b), seconds=20)
        after = await chat(b, "after", user="outage")
        assert after.status_code == 200, after.text
        page = (await get(a, "/sessions/agent:main:openai-user:outage/history")).json()
        assert [m["content"] for m in page["messages"] if m["role"] == "user"] == [
            "before",
            "after",
        ]
        for text in (hosts.log_text(), metrics, stateful.text, history.text):
            assert PASSWORD not in text
            assert "s3cret-p%40ss" not in text


async def test_an_older_gateway_refuses_a_newer_schema(
    tmp_path: Path, up: FakeUpstream, postgres: Cluster
) -> None:
    url = postgres.database()
    name = url.rsplit("/", 1)[1]
    config = write_config(tmp_path, up)
    with start_hosts(tmp_path, config, url, count=1) as hosts:
        await wait_all(hosts)
    postgres.sql(name, "INSERT INTO gateway_schema (version, applied_at_ms) VALUES (99, 0)")
    with start_hosts(tmp_path, config, url, count=1) as hosts:
        await trio.to_thread.run_sync(partial(hosts.procs[0].wait, 20))
        assert hosts.procs[0].returncode != 0
        log = hosts.log_text()
        assert "schema version 99" in log
        assert "upgrade the gateway" in log
        assert PASSWORD not in log
