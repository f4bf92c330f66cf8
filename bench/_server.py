"""``gateway serve`` with read-only introspection, for benchmarks: ``python -m bench._server``.

Same app (``create_app``), same Hypercorn trio worker settings (``gateway.serve.hypercorn_config``)
and same shutdown as ``gateway serve --config PATH --port N``, plus, on the same listener:

- ``GET /_bench/stats``: what the app holds right now: ``runtime.statistics()`` (active and
  queued runs), admission's ``statistics()`` and, when it is shared, its lane tickets, the number
  of trio tasks, open file descriptors and VmRSS of the process;
- ``GET /_bench/memory``: live memory by allocation site (with ``--tracemalloc``);
- ``GET /_bench/lanes``: per request tagged with an ``x-bench-id`` header, when its run asked
  for a lane, was admitted (``null`` if never) and left the lane (queue or slot released),
  ``time.monotonic()`` in seconds; the answer empties the table.

A benchmark uses this to measure close → leaving the queue for runs that never reach the
upstream, and to check that nothing is left after many aborts. Not for production.
"""

from __future__ import annotations

import argparse
import contextvars
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import hypercorn.trio
import trio
from hypercorn.config import Config

from gateway.app import create_app
from gateway.config import ConfigError, load_settings

BENCH_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("bench_id", default=None)


class LaneProbe:
    """Wraps the runtime's admission; records lane enter/admit/exit per bench id."""

    def __init__(self, admission: Any) -> None:
        self._admission = admission
        self.events: dict[str, list[float | None]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._admission, name)

    @asynccontextmanager
    async def admit(self, key: str | None, on_kill: Any) -> AsyncIterator[None]:
        bench_id = BENCH_ID.get()
        entry: list[float | None] = [time.monotonic(), None, None]
        try:
            async with self._admission.admit(key, on_kill):
                entry[1] = time.monotonic()
                yield
        finally:
            entry[2] = time.monotonic()
            if bench_id is not None:
                self.events[bench_id] = entry


def _count_tasks() -> int:
    count = 0
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def _top_allocations(limit: int = 30) -> dict[str, Any]:
    """Live memory by allocation site (``--tracemalloc`` only), biggest first."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        return {"error": "start the server with --tracemalloc"}
    snapshot = tracemalloc.take_snapshot()
    by_file = snapshot.statistics("filename")
    by_line = snapshot.statistics("lineno")

    def rows(stats: list[Any]) -> list[dict[str, Any]]:
        return [
            {"where": str(stat.traceback), "kb": stat.size / 1024, "count": stat.count}
            for stat in stats[:limit]
        ]

    total = sum(stat.size for stat in by_file)
    return {"traced_kb": total / 1024, "by_file": rows(by_file), "by_line": rows(by_line)}


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Introspection:
    """The ASGI app: ``/_bench/*`` answered here, everything else goes to the gateway."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.app = gateway.asgi
        runtime = gateway.runtime
        self.admission = runtime.admission
        self.probe = LaneProbe(self.admission)
        runtime.admission = self.probe

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/_bench/stats":
                await _json(send, await self.stats())
                return
            if path == "/_bench/memory":
                await _json(send, _top_allocations())
                return
            if path == "/_bench/lanes":
                events = self.probe.events if self.probe else {}
                if self.probe:
                    self.probe.events = {}
                await _json(send, events)
                return
            for name, value in scope["headers"]:
                if name == b"x-bench-id":
                    BENCH_ID.set(value.decode("latin-1"))
        await self.app(scope, receive, send)

    async def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": time.monotonic()}
        runtime_stats = self.gateway.runtime.statistics()
        out["active_runs"] = getattr(runtime_stats, "active_runs", None)
        out["queued_runs"] = getattr(runtime_stats, "queued_runs", None)
        lanes = self.admission.statistics()
        out["lanes"] = {
            name: getattr(lanes, name)
            for name in ("sessions_held", "sessions_waiting", "slots_held", "slots_waiting")
        }
        inner = getattr(self.admission, "inner", self.admission)
        out["lane_tickets"] = len(await inner.tickets()) if hasattr(inner, "tickets") else 0
        out["tasks"] = _count_tasks()
        out["fds"] = len(os.listdir("/proc/self/fd"))
        out["rss_kb"] = _rss_kb()
        return out


async def _json(send: Any, document: Any) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _hypercorn_config(settings: Any, host: str, port: int) -> Config:
    from gateway.serve import hypercorn_config

    return hypercorn_config(settings, host, port)


async def _shutdown_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--profile", help="write cProfile stats of the whole run to this file")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace allocations (GET /_bench/memory)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"bench server: configuration error: {error}", file=sys.stderr)
        return 2
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
    gateway = create_app(settings)
    app = Introspection(gateway)
    config = _hypercorn_config(settings, "127.0.0.1", args.port)
    serve = partial(hypercorn.trio.serve, app, config, shutdown_trigger=_shutdown_signal)
    if args.profile:
        import cProfile

        with cProfile.Profile() as profile:
            trio.run(serve)
        profile.dump_stats(args.profile)
    else:
        trio.run(serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
