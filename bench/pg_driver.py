"""PostgreSQL from trio, per query: the gateway's driver against the other ways trio can drive
psycopg, and the floor.

psycopg's asynchronous API (``AsyncConnection``) runs on asyncio only, so under trio a query
goes through a thread either way:

- ``job_queue``: the gateway's ``PgDatabase`` (``gateway/sessions/postgres/connection.py``):
  ``--connections`` threads, each owning one connection, taking jobs from one queue; the caller
  parks until its job's thread reschedules it;
- ``to_thread_pool``: ``trio.to_thread.run_sync`` per query, the thread borrowing a connection
  from a ``psycopg_pool.ConnectionPool`` of ``--connections`` connections (a
  ``CapacityLimiter`` of the same size, so no thread blocks on the pool);
- ``floor``: the same query on one blocking connection, one after the other in one thread, no
  trio in between (at concurrency 1 only: it is the round trip and psycopg's own work).

Queries, each in autocommit (one round trip): ``SELECT 1`` and a one-row ``INSERT`` of 64
characters. Concurrency 1 and 16 (``--concurrency``): closed-loop trio tasks, each sending its
next query when the last answered. Per round the drivers take turns (the order rotating),
``--queries`` queries each; latency is each call's wall time as its caller sees it; CPU per
query is this process's ``time.process_time()`` over the block (threads included; the server's
CPU is not). ``python -m bench.pg_driver`` starts a throwaway PostgreSQL cluster
(``tests/postgres.py``) and stops it; ``bench.pg_scale`` runs the same measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import psycopg
import trio
from psycopg_pool import ConnectionPool

from bench.common import environment, percentile, table, write_json
from gateway.sessions.postgres.connection import PgDatabase

Query = Callable[[psycopg.Connection[Any]], object]
DRIVERS = ("job_queue", "to_thread_pool", "floor")
ROWS_TABLE = "bench_driver_rows"


def select_one(connection: psycopg.Connection[Any]) -> object:
    return connection.execute("SELECT 1").fetchone()


def insert_row(connection: psycopg.Connection[Any]) -> object:
    return connection.execute(
        f"INSERT INTO {ROWS_TABLE} (at, body) VALUES (%s, %s)", (time.time(), "x" * 64)
    )


QUERIES: dict[str, Query] = {"select_1": select_one, "insert": insert_row}


class Driver(Protocol):
    async def run(self, query: Query) -> None: ...


class JobQueue:
    """The gateway's driver."""

    def __init__(self, url: str, connections: int) -> None:
        self.db = PgDatabase(url, size=connections, name="bench driver")

    async def run(self, query: Query) -> None:
        await self.db.run(query, transaction=False)

    async def aclose(self) -> None:
        await self.db.aclose()


class ToThreadPool:
    """``trio.to_thread.run_sync`` per query on a ``psycopg_pool.ConnectionPool``."""

    def __init__(self, url: str, connections: int) -> None:
        self.pool = ConnectionPool(
            url,
            min_size=connections,
            max_size=connections,
            kwargs={"autocommit": True},
            open=False,
        )
        self.limiter = trio.CapacityLimiter(connections)

    async def open(self) -> None:
        await trio.to_thread.run_sync(partial(self.pool.open, wait=True, timeout=30))

    def _call(self, query: Query) -> None:
        with self.pool.connection() as connection:
            query(connection)

    async def run(self, query: Query) -> None:
        await trio.to_thread.run_sync(self._call, query, limiter=self.limiter)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.pool.close)


def floor_block(connection: psycopg.Connection[Any], query: Query, count: int) -> list[float]:
    """``count`` queries on ``connection`` in this thread, one after the other; each one's
    seconds."""
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        query(connection)
        latencies.append(time.perf_counter() - started)
    return latencies


async def driver_block(
    driver: Driver, query: Query, concurrency: int, count: int
) -> tuple[list[float], float]:
    """``count`` queries over ``concurrency`` closed-loop tasks; latencies and wall seconds."""
    latencies: list[float] = []

    async def task(share: int) -> None:
        for _ in range(share):
            started = time.perf_counter()
            await driver.run(query)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for n in range(concurrency):
            nursery.start_soon(task, count // concurrency + (n < count % concurrency))
    return latencies, time.perf_counter() - started


async def measure_drivers(
    url: str,
    *,
    concurrency: list[int],
    queries: int,
    rounds: int,
    connections: int,
) -> dict[str, Any]:
    """Every driver, query and concurrency on the database at ``url`` (see the module
    docstring); creates and fills ``bench_driver_rows`` there."""
    await trio.to_thread.run_sync(_create_table, url)
    job_queue = JobQueue(url, connections)
    pool = ToThreadPool(url, connections)
    await pool.open()
    floor = await trio.to_thread.run_sync(partial(psycopg.connect, url, autocommit=True))
    drivers: dict[str, Driver] = {"job_queue": job_queue, "to_thread_pool": pool}
    samples: dict[tuple[str, str, int], list[float]] = {}
    cpu: dict[tuple[str, str, int], float] = {}
    wall: dict[tuple[str, str, int], float] = {}
    try:
        for name in QUERIES:  # warm-up: connections open, statements seen once
            for driver in drivers.values():
                await driver_block(driver, QUERIES[name], 4, 200)
            await trio.to_thread.run_sync(floor_block, floor, QUERIES[name], 200)
        for index in range(rounds):
            for name, query in QUERIES.items():
                for c in concurrency:
                    order = [d for d in DRIVERS if d != "floor" or c == 1]
                    shift = index % len(order)
                    for which in order[shift:] + order[:shift]:
                        key = (which, name, c)
                        cpu_before = time.process_time()
                        if which == "floor":
                            started = time.perf_counter()
                            block = await trio.to_thread.run_sync(
                                floor_block, floor, query, queries
                            )
                            elapsed = time.perf_counter() - started
                        else:
                            block, elapsed = await driver_block(drivers[which], query, c, queries)
                        cpu[key] = cpu.get(key, 0.0) + time.process_time() - cpu_before
                        wall[key] = wall.get(key, 0.0) + elapsed
                        samples.setdefault(key, []).extend(block)
    finally:
        with trio.CancelScope(shield=True):
            await job_queue.aclose()
            await pool.aclose()
            floor.close()
    results: dict[str, Any] = {}
    for (which, name, c), values in samples.items():
        ms = [v * 1000 for v in values]
        results.setdefault(name, {}).setdefault(str(c), {})[which] = {
            "n": len(ms),
            "p50_ms": percentile(ms, 50),
            "p99_ms": percentile(ms, 99),
            "mean_ms": sum(ms) / len(ms),
            "queries_per_s": len(ms) / wall[(which, name, c)],
            "cpu_us_per_query": 1e6 * cpu[(which, name, c)] / len(ms),
        }
    return {
        "results": results,
        "config": {
            "concurrency": concurrency,
            "queries_per_block": queries,
            "rounds": rounds,
            "connections": connections,
            "psycopg": psycopg.__version__,
        },
    }


def _create_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {ROWS_TABLE}"
            " (id bigserial PRIMARY KEY, at double precision, body text)"
        )


def report(driver: dict[str, Any]) -> str:
    """The comparison as a table: per query and concurrency, each driver's figures and its
    p50 over the floor's (the cost of getting from trio to the connection and back)."""
    rows = []
    for name, per_c in driver["results"].items():
        floor = per_c.get("1", {}).get("floor", {}).get("p50_ms")
        for c, per_driver in per_c.items():
            for which in DRIVERS:
                if which not in per_driver:
                    continue
                data = per_driver[which]
                added = data["p50_ms"] - floor if floor is not None and c == "1" else None
                rows.append(
                    [
                        name,
                        c,
                        which,
                        data["p50_ms"],
                        data["p99_ms"],
                        None if added is None else added * 1000,
                        data["queries_per_s"],
                        data["cpu_us_per_query"],
                        data["n"],
                    ]
                )
    headers = ["query", "c", "driver", "p50 ms", "p99 ms", "p50 over floor µs", "queries/s"]
    headers += ["CPU µs/query (this process)", "n"]
    return table(headers, rows)


def add_options(parser: argparse.ArgumentParser, *, quick: bool = False) -> None:
    parser.add_argument("--driver-concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--driver-queries", type=int, default=300 if quick else 1000)
    parser.add_argument("--driver-rounds", type=int, default=1 if quick else 3)
    parser.add_argument("--connections", type=int, default=6, help="per driver (a host has 6)")


async def _amain(args: argparse.Namespace, url: str) -> dict[str, Any]:
    return await measure_drivers(
        url,
        concurrency=args.driver_concurrency,
        queries=args.driver_queries,
        rounds=args.driver_rounds,
        connections=args.connections,
    )


def main(argv: list[str] | None = None) -> int:
    from bench.common import parser_for
    from tests.postgres import server_binaries, throwaway_cluster

    parser = parser_for(__doc__, target=False)
    parser.add_argument("--quick", action="store_true", help="a smoke run, seconds")
    known, _ = parser.parse_known_args(argv)
    add_options(parser, quick=known.quick)
    args = parser.parse_args(argv)
    if server_binaries() is None:
        print("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
        return 2
    with throwaway_cluster() as cluster:
        result = trio.run(_amain, args, cluster.database())
    result["environment"] = environment()
    path = write_json(args.out, "pg_driver", result)
    print(report(result))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
