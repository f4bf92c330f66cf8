"""The PostgreSQL store against SQLite: completions/s and added TTFT with 1, 2 and 4 gateway
processes, admission's cost per run, and the PostgreSQL driver per query.

One run starts a throwaway PostgreSQL cluster (``tests/postgres.py``: ``initdb`` in a temporary
directory, ``fsync=off``), the fake upstream (``bench._upstream``, 8 tokens, zero delay) and, for
each store and each N of ``--processes``, N single-worker ``gateway serve`` processes on ports
of their own (``bench._pg_load``): on SQLite sharing one state directory
(``gateway.store.shared: true``), on PostgreSQL one database (a fresh one per N). All are started
first and idle while the others are measured; everything is stopped at the end, the cluster too.

1. Load: ``--concurrency`` closed-loop streaming clients, each request sent to the next process
   in turn. ``stateless``: no ``user`` (no lane, no transcript). ``stateful``: ``user`` set to
   one of ``--sessions`` keys per client (lane, transcript read and append on every request;
   the key prefix is per store and N, so later rounds continue the same sessions). Per round:
   a block straight to the fake upstream (the TTFT baseline, as ``bench.overhead`` does), then
   every (mode, store, N) for ``--warmup`` + ``--duration`` seconds, the order reversed every
   other round; then the same with one client on N = 1 (``single``: a request's latency with
   nothing queued, ``--single-duration``). Added TTFT = the gateway's percentile minus the
   direct one at the same concurrency (not paired). CPU of every process during each block
   (gateways, fake upstream, the PostgreSQL server with its backends, this process: the
   clients).
2. Admission (``bench._pg_admission``), in this process once the gateways are stopped:
   ``LocalAdmission``, SQLite's ``SharedAdmission`` and ``PgAdmission`` timed per run.
3. Driver (``bench.pg_driver``): the gateway's thread-per-connection job queue against
   ``trio.to_thread.run_sync`` per query on a ``psycopg_pool`` pool, and the blocking floor.

Writes ``pg_scale.json`` and ``pg_scale.png``. Needs PostgreSQL's server binaries (Debian:
``apt-get install postgresql``) and the test extra (``tests/postgres.py`` imports pytest).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from bench import pg_driver
from bench._load import ProcessesCpu
from bench._pg_admission import measure_admission
from bench._pg_load import (
    Block,
    Bodies,
    Gateways,
    closed_loop,
    gateway_headers,
    open_gateways,
    sessions_stored,
)
from bench._pg_report import plot, print_report
from bench.client import Endpoint, headers_for
from bench.common import (
    DEFAULT_MODEL,
    environment,
    open_upstream,
    parser_for,
    raise_fd_limit,
    summary,
    write_json,
)

STORES = ("sqlite", "postgres")
MODES = ("stateless", "stateful")


async def measure(
    args: argparse.Namespace,
    gateways: Gateways,
    bodies: Bodies,
    pids: dict[str, int],
    concurrency: int,
    seconds: float,
) -> tuple[Block, dict[str, float]]:
    """One warmed-up block against ``gateways``, with the CPU of every process after the
    warm-up."""
    cpu = ProcessesCpu({**{f"gateway {i + 1}": p for i, p in enumerate(gateways.pids)}, **pids})

    async def start_cpu() -> None:
        await trio.sleep(args.warmup)
        cpu.start()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start_cpu)
        block = await closed_loop(
            gateways.endpoints,
            "/v1/chat/completions",
            gateway_headers(),
            bodies.body,
            concurrency,
            args.warmup,
            seconds,
        )
    return block, cpu.stop()


def combine(blocks: list[tuple[Block, dict[str, float]]], direct: dict[str, Any]) -> dict[str, Any]:
    """The rounds of one (mode, store, N) as one measurement."""
    ttft = [1000 * t for b, _ in blocks for t in b.ttft]
    total = [1000 * t for b, _ in blocks for t in b.total]
    seconds = sum(b.seconds for b, _ in blocks)
    wall = sum(c["wall_s"] for _, c in blocks)
    cpu = {
        name: sum(c[name] * c["wall_s"] for _, c in blocks) / wall
        for name in blocks[0][1]
        if name != "wall_s"
    }
    rate = len(total) / seconds
    gateway_cpu = sum(v for k, v in cpu.items() if k.startswith("gateway"))
    out: dict[str, Any] = {
        "completions_per_s": rate,
        "ttft_ms": summary(ttft),
        "total_ms": summary(total),
        "failures": sum(b.failures for b, _ in blocks),
        "cpu": cpu,
        # % of a core / (completions/s) * 10 = ms of CPU per completion
        "gateway_cpu_ms_per_completion": 10 * gateway_cpu / rate if rate else None,
        "postgres_cpu_ms_per_completion": 10 * cpu["postgres"] / rate if rate else None,
    }
    for stat in ("p50", "p99"):
        mine, base = out["ttft_ms"][stat], direct["ttft_ms"][stat]
        out[f"added_ttft_{stat}_ms"] = None if mine is None or base is None else mine - base
    return out


def direct_result(blocks: list[Block]) -> dict[str, Any]:
    ttft = [1000 * t for b in blocks for t in b.ttft]
    return {
        "ttft_ms": summary(ttft),
        "completions_per_s": len(ttft) / sum(b.seconds for b in blocks),
        "failures": sum(b.failures for b in blocks),
    }


async def load(
    args: argparse.Namespace, cluster: Any, postmaster: int, tmp: Path
) -> dict[str, Any]:
    """Part 1 (see the module docstring): ``scale`` at ``--concurrency`` over every N, and
    ``single``: one client on one process, the latency of a request alone."""
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # (level, mode, store, N) -> blocks; level "scale" or "single"
    blocks: dict[tuple[str, str, str, int], list[tuple[Block, dict[str, float]]]] = {}
    direct: dict[str, list[Block]] = {"scale": [], "single": []}
    levels = {
        "scale": (args.concurrency, args.duration, list(args.processes)),
        "single": (1, args.single_duration, [1]),
    }
    async with (
        open_upstream(log=logs / "pg_scale-upstream.log") as up,
        AsyncExitStack() as stack,
    ):
        gateways: dict[tuple[str, int], Gateways] = {}
        urls: dict[tuple[str, int], str | None] = {}
        for store in STORES:
            for count in args.processes:
                url = urls[(store, count)] = cluster.database() if store == "postgres" else None
                spec: dict[str, Any] = {"url": url} if url else {"shared": True}
                gateways[(store, count)] = await stack.enter_async_context(
                    open_gateways(count, spec, up.base_url, tmp, logs, f"{store}-{count}")
                )
        print(
            f"pg_scale: {args.concurrency} clients (and 1), processes {args.processes}, "
            f"{args.rounds} rounds"
        )
        pids = {"upstream": up.process.pid, "postgres": postmaster}
        upstream = Endpoint.parse(up.base_url)
        include_usage = {"stream_options": {"include_usage": True}}
        direct_bodies = Bodies("fake", sessions=0, prefix="", extra=include_usage)
        for index in range(args.rounds):
            for level, (concurrency, seconds, counts) in levels.items():
                direct[level].append(
                    await closed_loop(
                        [upstream],
                        upstream.path("/chat/completions"),
                        headers_for(None),
                        direct_bodies.body,
                        concurrency,
                        args.warmup,
                        seconds,
                    )
                )
                configs = [(store, count) for store in STORES for count in counts]
                for mode in MODES:
                    for store, count in configs if index % 2 == 0 else configs[::-1]:
                        sessions = args.sessions if mode == "stateful" else 0
                        prefix = f"{level}{store}{count}"
                        bodies = Bodies(DEFAULT_MODEL, sessions=sessions, prefix=prefix)
                        found = gateways[(store, count)]
                        result = await measure(args, found, bodies, pids, concurrency, seconds)
                        blocks.setdefault((level, mode, store, count), []).append(result)
                        block = result[0]
                        print(
                            f"  round {index + 1}, c={concurrency}, {mode}, {store}, N={count}: "
                            f"{len(block.total) / block.seconds:.0f}/s, {block.failures} failures"
                        )
    out: dict[str, Any] = {"direct": {k: direct_result(v) for k, v in direct.items()}}
    for (level, mode, store, count), per in blocks.items():
        data = combine(per, out["direct"][level])
        out.setdefault(level, {}).setdefault(mode, {}).setdefault(store, {})[str(count)] = data
    for per_store in out["scale"].values():
        for per_count in per_store.values():
            one = per_count["1"]["completions_per_s"]
            for data in per_count.values():
                data["ratio_to_one"] = data["completions_per_s"] / one if one else None
    for (store, count), found in gateways.items():
        stored = sessions_stored(cluster, found, urls[(store, count)])
        out["scale"]["stateful"][store][str(count)]["sessions_stored"] = stored
        for per_store in out["scale"].values():  # the logs cover every block
            per_store[store][str(count)]["log_errors"] = found.log_errors()
    return out


async def amain(args: argparse.Namespace, cluster: Any) -> dict[str, Any]:
    raise_fd_limit(args.concurrency * max(args.processes) * 4 + 1000)
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    durations: dict[str, float] = {}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        result = await load(args, cluster, postmaster, Path(tmp))
        durations["load"] = time.monotonic() - started
        result["admission"] = await measure_admission(
            cluster.database(),
            Path(tmp) / "admission",
            runs=args.admission_runs,
            rounds=args.handover_rounds,
            server_pid=postmaster,
        )
        durations["admission"] = time.monotonic() - started - durations["load"]
    print("  driver comparison")
    result["driver"] = await pg_driver.measure_drivers(
        cluster.database(),
        concurrency=args.driver_concurrency,
        queries=args.driver_queries,
        rounds=args.driver_rounds,
        connections=args.connections,
    )
    durations["driver"] = time.monotonic() - started - durations["load"] - durations["admission"]
    result["durations_s"] = durations
    result["config"] = {
        "processes": args.processes,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "single_duration_s": args.single_duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "sessions_per_client": args.sessions,
        "upstream": "bench._upstream (one process), 8 tokens, zero delay, streaming",
        "postgres": "throwaway cluster (tests/postgres.py), fsync=off, loopback TCP",
        "quick": args.quick,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    from tests.postgres import server_binaries, throwaway_cluster

    parser = parser_for(__doc__, target=False)
    parser.add_argument("--quick", action="store_true", help="a smoke run, about 30 s")
    quick = parser.parse_known_args(argv)[0].quick
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2] if quick else [1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=4 if quick else 16)
    parser.add_argument("--duration", type=float, default=0.6 if quick else 2.5)
    parser.add_argument("--warmup", type=float, default=0.3 if quick else 0.5)
    parser.add_argument(
        "--single-duration", type=float, default=0.5 if quick else 2.0, help="one client, N=1"
    )
    parser.add_argument("--rounds", type=int, default=1 if quick else 2)
    parser.add_argument(
        "--sessions", type=int, default=25, help="per client (odd: sessions move between processes)"
    )
    parser.add_argument("--admission-runs", type=int, default=50 if quick else 500)
    parser.add_argument("--handover-rounds", type=int, default=10 if quick else 100)
    pg_driver.add_options(parser, quick=quick)
    args = parser.parse_args(argv)
    if 1 not in args.processes:
        parser.error("--processes must include 1 (the reference)")
    if server_binaries() is None:
        print("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
        return 2
    with throwaway_cluster() as cluster:
        result = trio.run(amain, args, cluster)
    result["environment"] = environment()
    result["plots"] = plot(args, result)
    path = write_json(args.out, "pg_scale", result)
    print_report(result)
    print("\ndurations: " + ", ".join(f"{k} {v:.0f} s" for k, v in result["durations_s"].items()))
    print(f"wrote {path}" + "".join(f", {p}" for p in result["plots"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
