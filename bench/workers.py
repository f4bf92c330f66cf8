"""More worker processes: completions/s of ``gateway serve --workers N`` through an upstream.

In one run, for each N of ``--workers`` (default 1 and 2), a ``gateway serve --workers N``
(separate processes, the same generated config; all started first, idle while the others are
measured) answers the same closed-loop load: chat completions through the fake upstream (8
tokens, zero delay, one separate process for the whole run), non-streaming (``fake_json``) and
streaming (``fake_stream``), over ``--connections`` keep-alive connections for ``--duration``
seconds after a warm-up. ``--rounds`` rounds, the order of N alternating, so that a busy moment
of the machine hits every N alike; the rate is the mean over the rounds. The ratio is
completions/s with N workers ÷ with one.

Printed per scenario: the CPU of every process (each gateway worker, the master, the fake
upstream, the load generator, this process, and the rest of the machine), and how many of the
load's connections each worker holds (the workers share one listening socket: whichever accepts
first gets a connection, for good with keep-alive), and two **CPU ceiling ratios**, the best
N workers can do on this machine: one worker serves at most a core's worth (1 / its CPU per
completion), N workers with the fake upstream and the load generator at most all the cores
(cores / all our processes' CPU per completion); the ratio of the two, capped at N. The first
takes every CPU cost from the one-worker run (as if N workers cost no more per completion), the
second the N-worker run's own. Both are well below N when the upstream and the load generator
share the cores, whatever else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from bench._gateway_serve import Gateway, connections_of, open_gateway
from bench._load import LoadOptions, ProcessesCpu, Scenario, choose_tool, run_load
from bench.client import chat_body, tagged_text
from bench.common import (
    DEFAULT_TOKEN,
    environment,
    gateway_config,
    open_upstream,
    parser_for,
    percentile,
    raise_fd_limit,
    table,
    write_json,
)

# Completions/s with 2 workers ÷ with 1, for every scenario.
GOAL_RATIO = 1.7
KNOBS = {"tokens": 8, "token_delay": 0}


def scenario_for(name: str, url: str) -> Scenario:
    """``fake_json`` or ``fake_stream`` against the gateway at ``url``."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {DEFAULT_TOKEN}"}
    body = chat_body("openclaw", tagged_text("wk", KNOBS), stream=name == "fake_stream")
    return Scenario(name, url + "/v1/chat/completions", "POST", headers, body)


async def measure(
    load: LoadOptions,
    scenario: Scenario,
    args: argparse.Namespace,
    gateway: Gateway,
    upstream_pid: int,
    tmp: Path,
) -> dict[str, Any]:
    """One warmed-up load run against ``gateway``, with the CPU of every process."""
    await run_load(load, scenario, args.warmup, tmp)
    cpu = ProcessesCpu({**gateway.named(), "upstream": upstream_pid}, tree=False)
    connections: list[int] = []

    async def count_connections() -> None:
        await trio.sleep(args.duration / 2)
        connections.extend(connections_of(pid, gateway.port) for pid in gateway.workers)

    cpu.start()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(count_connections)
        result = await run_load(load, scenario, args.duration, tmp)
    result["cpu"] = cpu.stop(result["loadgen_cpu_s"])
    result["connections_per_worker"] = connections
    return result


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one scenario and worker count as one measurement."""
    wall = sum(r["cpu"]["wall_s"] for r in rounds)
    cpu = {
        name: sum(r["cpu"][name] * r["cpu"]["wall_s"] for r in rounds) / wall
        for name in rounds[0]["cpu"]
        if name != "wall_s"
    }
    rate = sum(r["requests_per_s"] for r in rounds) / len(rounds)
    ours = sum(v for k, v in cpu.items() if k not in ("machine", "others"))
    gateway = sum(v for k, v in cpu.items() if k.startswith("worker") or k == "master")
    return {
        "requests_per_s": rate,
        "rounds_per_s": [r["requests_per_s"] for r in rounds],
        "p50_ms": percentile([r["p50_ms"] for r in rounds if r["p50_ms"] is not None], 50),
        "p99_ms": max((r["p99_ms"] or 0) for r in rounds),
        "errors": sum(r["non_2xx"] + r["socket_errors"] for r in rounds),
        "cpu": cpu,
        "connections_per_worker": [r["connections_per_worker"] for r in rounds],
        # % of a core / (completions/s) * 10 = ms of CPU per completion
        "our_cpu_ms_per_completion": 10 * ours / rate if rate else None,
        "gateway_cpu_ms_per_completion": 10 * gateway / rate if rate else None,
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(args.connections * 8 + 1000)
    load = LoadOptions(choose_tool(args.loadgen), args.connections, args.processes)
    rounds: dict[tuple[str, int], list[dict[str, Any]]] = {}
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        tmp_path = Path(tmp)
        async with (
            open_upstream(log=logs / "workers-upstream.log") as up,
            AsyncExitStack() as stack,
        ):
            config = gateway_config(DEFAULT_TOKEN, up.base_url, max_concurrent=1024)
            config_path = tmp_path / "openclaw.json"
            config_path.write_text(json.dumps(config, indent=2))
            gateways = {}
            for count in args.workers:  # all started first: idle, they cost nothing
                log = logs / f"workers-{count}-gateway.log"
                gateways[count] = await stack.enter_async_context(
                    open_gateway(config_path, count, tmp_path, log)
                )
            print(
                f"workers: {args.workers}, load generator {load.tool}, {args.connections} "
                f"connections, {args.rounds} rounds of {args.duration:g} s"
            )
            for index in range(args.rounds):
                order = args.workers if index % 2 == 0 else args.workers[::-1]
                for name in ("fake_json", "fake_stream"):
                    for count in order:
                        gateway = gateways[count]
                        scenario = scenario_for(name, gateway.url)
                        result = await measure(
                            load, scenario, args, gateway, up.process.pid, tmp_path
                        )
                        rounds.setdefault((name, count), []).append(result)
                        print(
                            f"  round {index + 1}, {count} worker(s), {name}: "
                            f"{result['requests_per_s']:.0f}/s, connections per worker "
                            f"{result['connections_per_worker']}"
                        )
    cores = os.cpu_count() or 1
    runs: dict[str, dict[str, Any]] = {}
    for (name, count), results in rounds.items():
        runs.setdefault(name, {})[str(count)] = combine(results)
    for per_count in runs.values():
        one = per_count["1"]
        for count, result in per_count.items():
            rate = result["requests_per_s"]
            result["ratio_to_one"] = rate / one["requests_per_s"] if rate else None
            result["ceiling_ratio"] = ceiling_ratio(one, one, int(count), cores)
            result["own_ceiling_ratio"] = ceiling_ratio(one, result, int(count), cores)
            if result["cpu"]["upstream"] > 80:
                print(f"  note: the fake upstream used {result['cpu']['upstream']:.0f} % of a core")
    return {
        "scenarios": runs,
        "goal_ratio": GOAL_RATIO,
        "config": {
            "workers": args.workers,
            "loadgen": load.tool,
            "connections": args.connections,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "cores": cores,
            "upstream": "bench._upstream (one process), 8 tokens, zero delay",
        },
    }


def ceiling_ratio(
    one: dict[str, Any], many: dict[str, Any], workers: int, cores: int
) -> float | None:
    """The best ratio ``cores`` allow: one worker can at most fill a core (1 / its gateway CPU
    per completion, from ``one``) completions/s; N workers, the fake upstream and the load
    generator together at most ``cores`` cores (cores / all our CPU per completion, from
    ``many``)."""
    gateway: float | None = one["gateway_cpu_ms_per_completion"]
    ours: float | None = many["our_cpu_ms_per_completion"]
    if not gateway or not ours:
        return None
    return min(float(workers), cores * gateway / ours)


def goal_met(workers: str, ratio: float | None) -> bool | str:
    if workers != "2":
        return ""
    return ratio is not None and ratio >= GOAL_RATIO


def print_report(result: dict[str, Any]) -> None:
    config = result["config"]
    rows, cpu_rows = [], []
    for name, per_count in result["scenarios"].items():
        for count, data in per_count.items():
            cpu = data["cpu"]
            rows.append(
                [
                    name,
                    count,
                    data["requests_per_s"],
                    data["ratio_to_one"],
                    data["ceiling_ratio"],
                    data["own_ceiling_ratio"],
                    data["gateway_cpu_ms_per_completion"],
                    data["p50_ms"],
                    data["p99_ms"],
                    ", ".join("/".join(map(str, c)) for c in data["connections_per_worker"]),
                    data["errors"],
                    goal_met(count, data["ratio_to_one"]),
                ]
            )
            workers = [f"{cpu[k]:.0f}" for k in sorted(cpu) if k.startswith("worker")]
            cpu_rows.append(
                [
                    name,
                    count,
                    " / ".join(workers),
                    cpu.get("master"),
                    cpu["upstream"],
                    cpu["loadgen"],
                    cpu["bench"],
                    cpu["others"],
                    cpu["machine"],
                ]
            )
    print()
    print(
        f"gateway serve --workers N through the fake upstream ({config['loadgen']}, "
        f"{config['connections']} connections, {config['rounds']} rounds of "
        f"{config['duration_s']:g} s, {config['cores']} cores); goal: 2 workers >= "
        f"{GOAL_RATIO}x one"
    )
    headers = ["scenario", "workers", "completions/s", "ratio to 1", "CPU ceiling: 1-worker costs"]
    headers += ["CPU ceiling: own costs"]
    headers += [
        "gateway CPU ms/completion",
        "p50 ms",
        "p99 ms",
        "connections per worker, per round",
    ]
    headers += ["errors", "goal met"]
    print(table(headers, rows))
    print()
    print("CPU, % of one core, during each measurement")
    headers = ["scenario", "workers", "each worker", "master", "upstream", "load generator"]
    headers += ["this process", "others", "machine"]
    print(table(headers, cpu_rows))


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__, target=False)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each, alternated")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--processes", type=int, default=2, help="Python load generator processes")
    args = parser.parse_args(argv)
    if 1 not in args.workers:
        parser.error("--workers must include 1 (the reference)")
    result = trio.run(amain, args)
    result["environment"] = environment()
    path = write_json(args.out, "workers", result)
    print_report(result)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
