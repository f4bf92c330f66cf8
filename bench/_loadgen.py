"""A Python load generator, for machines without ``wrk``: ``python -m bench._loadgen``.

``--connections`` keep-alive HTTP/1.1 connections (h11 over trio) send the same request in a
closed loop for ``--duration`` seconds. Prints one JSON line: completed requests (2xx), other
statuses, errors, and latency percentiles. ``bench.throughput`` runs several of these processes
at once and adds them up (one Python process alone is usually the bottleneck).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import trio

from bench.client import Endpoint, H11Client


async def run(args: argparse.Namespace, body: bytes) -> dict[str, object]:
    endpoint = Endpoint.parse(args.url)
    path = endpoint.prefix or "/"
    headers = json.loads(args.headers)
    ok = other = errors = 0
    latencies: list[float] = []
    deadline = trio.current_time() + args.duration

    async def connection() -> None:
        nonlocal ok, other, errors
        client = H11Client(endpoint)
        try:
            while trio.current_time() < deadline:
                try:
                    answer = await client.request(args.method, path, headers, body)
                except (OSError, ConnectionError):
                    errors += 1
                    await client.aclose()
                    await trio.sleep(0.01)
                    continue
                if 200 <= answer.status < 300:
                    ok += 1
                    latencies.append(answer.ended - answer.started)
                else:
                    other += 1
        finally:
            await client.aclose()

    started = time.monotonic()
    with trio.move_on_after(args.duration + 30):
        async with trio.open_nursery() as nursery:
            for _ in range(args.connections):
                nursery.start_soon(connection)
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(q: float) -> float | None:
        return latencies[int(q * (len(latencies) - 1))] * 1000 if latencies else None

    return {
        "ok": ok,
        "non_2xx": other,
        "errors": errors,
        "elapsed_s": elapsed,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True, help="http://127.0.0.1:PORT/path")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--headers", default="{}", help="JSON object")
    parser.add_argument("--body-file")
    parser.add_argument("--connections", type=int, default=25)
    parser.add_argument("--duration", type=float, default=8.0)
    args = parser.parse_args(argv)
    body = Path(args.body_file).read_bytes() if args.body_file else b""
    print(json.dumps(trio.run(run, args, body)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
