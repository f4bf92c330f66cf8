"""Completions per second on one gateway worker, against the floor of the same worker, in one run.

Scenarios, each a closed loop of ``--connections`` keep-alive connections for ``--duration``
seconds (after a short warm-up):

- ``floor_healthz``: ``GET /healthz`` of the same gateway process (the floor: same Hypercorn
  trio worker, same Quart app and ASGI wrappers, no completion);
- ``floor_bare``: ``GET /healthz`` of a bare quart-trio app served the same way
  (``hypercorn -k trio``), for reference;
- ``echo_json`` / ``echo_stream``: chat completions from the built-in ``echo`` model (no
  upstream; it streams the 8-word message back word by word), non-streaming / streaming;
  reported for reference, without a goal;
- ``fake_json`` / ``fake_stream``: the same through the fake upstream (8 tokens, zero delay, a
  separate process) as provider ``fake``: the goals (``GOALS``).

Ratio = completions/s ÷ ``floor_healthz`` requests/s (the goals). Also printed: the gateway's
CPU per request, and the "ratio by CPU cost" (``floor_healthz``'s CPU per request ÷ the
scenario's), which is what the ratio would be if the gateway had a core to itself in every
scenario: on a shared machine, others' load during one scenario moves its rate, less its cost.
The load generator is ``wrk`` when it is installed (``apt-get install wrk``), else
``--processes`` Python processes (``bench._loadgen``), which may themselves be the bottleneck.
The CPU of the gateway, the fake upstream and the load generator during each scenario says
which side was saturated (~100 %: the gateway).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from bench._load import LoadOptions, ProcessesCpu, Scenario, choose_tool, run_load
from bench.client import Endpoint, chat_body, tagged_text
from bench.common import (
    environment,
    free_port,
    open_stack,
    parser_for,
    pyplot,
    raise_fd_limit,
    spawned,
    table,
    wait_healthy,
    write_json,
)

# Completions/s ÷ floor_healthz requests/s, per scenario; the echo scenarios have none.
GOALS = {"fake_json": 0.6, "fake_stream": 0.5}
FLOOR = "floor_healthz"
TEXT = "hello from the benchmark one two three four five"


def scenarios(
    args: argparse.Namespace, gateway: str, bare: str | None, token: str | None
) -> list[Scenario]:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    post = {"Content-Type": "application/json", **auth}
    chat = gateway + "/v1/chat/completions"
    fake_knobs = {"tokens": 8, "token_delay": 0}
    out = [Scenario(FLOOR, gateway + "/healthz")]
    if bare:
        out.append(Scenario("floor_bare", bare + "/healthz"))
    for stream in (False, True):
        suffix = "stream" if stream else "json"
        body = chat_body(args.model, TEXT, stream=stream)
        out.append(Scenario(f"echo_{suffix}", chat, "POST", post, body))
    if not args.target:
        for stream in (False, True):
            suffix = "stream" if stream else "json"
            body = chat_body(args.model + "/fake", tagged_text("tp", fake_knobs), stream=stream)
            out.append(Scenario(f"fake_{suffix}", chat, "POST", post, body))
    return out


def goal_met(name: str, ratio: float | None) -> bool | str:
    """Whether ``name`` met its goal; ``""`` when it has none."""
    goal = GOALS.get(name)
    if goal is None:
        return ""
    return ratio is not None and ratio >= goal


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(args.connections * 4 + 1000)
    load = LoadOptions(choose_tool(args.loadgen), args.connections, args.processes)
    results: dict[str, Any] = {}
    extra = [{"id": "fake", "model": "fake/fake"}]
    async with open_stack(
        args,
        name="throughput",
        upstream=not args.target,
        max_concurrent=max(256, args.connections * 2),
        extra_agents=extra,
        default_model="echo/echo",
    ) as stack:
        gateway = f"http://{stack.gateway.host}:{stack.gateway.port}{stack.gateway.prefix}"
        with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
            tmp_path = Path(tmp)
            bare_port = free_port()
            bare_cmd = [sys.executable, "-m", "hypercorn", "-k", "trio"]
            bare_cmd += ["--bind", f"127.0.0.1:{bare_port}", "bench._bare:app"]
            async with spawned(bare_cmd, log=tmp_path / "bare.log") as bare:
                bare_url = f"http://127.0.0.1:{bare_port}"
                await wait_healthy(Endpoint.parse(bare_url), bare, 30)
                print(f"throughput: load generator {load.tool}, {args.connections} connections")
                for scenario in scenarios(args, gateway, bare_url, stack.token):
                    await run_load(load, scenario, args.warmup, tmp_path)
                    pids: dict[str, int] = {}
                    server = bare.pid if scenario.name == "floor_bare" else stack.gateway_pid
                    if server:
                        pids["gateway"] = server
                    if stack.upstream:
                        pids["upstream"] = stack.upstream.process.pid
                    cpu = ProcessesCpu(pids)
                    cpu.start()
                    result = await run_load(load, scenario, args.duration, tmp_path)
                    result["cpu"] = cpu.stop(result["loadgen_cpu_s"])
                    results[scenario.name] = result
                    print(
                        f"  {scenario.name}: {result['requests_per_s']:.0f}/s, server CPU "
                        f"{result['cpu'].get('gateway', 0):.0f} %, errors "
                        f"{result['non_2xx'] + result['socket_errors']}"
                    )
    for result in results.values():
        rate, cpu = result["requests_per_s"], result["cpu"].get("gateway")
        # % of a core / (requests/s) * 10 = ms of CPU per request
        result["gateway_cpu_ms_per_request"] = 10 * cpu / rate if rate and cpu else None
    floor = results[FLOOR]["requests_per_s"]
    floor_cost = results[FLOOR]["gateway_cpu_ms_per_request"]
    for result in results.values():
        result["ratio_to_floor"] = result["requests_per_s"] / floor if floor else None
        cost = result["gateway_cpu_ms_per_request"]
        result["cpu_cost_ratio"] = floor_cost / cost if floor_cost and cost else None
    return {
        "scenarios": results,
        "goals": GOALS,
        "config": {
            "loadgen": load.tool,
            "connections": args.connections,
            "duration_s": args.duration,
            "processes": args.processes if load.tool == "python" else None,
            "target": args.target or "gateway serve (one process, Hypercorn trio worker)",
            "models": "echo: built-in echo/echo (no upstream); fake: bench._upstream, 8 tokens, "
            "zero delay",
        },
    }


def print_report(result: dict[str, Any]) -> None:
    rows = []
    for name, data in result["scenarios"].items():
        ratio = data["ratio_to_floor"]
        cpu = data["cpu"]
        goal = GOALS.get(name)
        rows.append(
            [
                name,
                data["requests_per_s"],
                ratio,
                f">= {goal:.0%}" if goal is not None else "",
                data["gateway_cpu_ms_per_request"],
                data["cpu_cost_ratio"],
                data["p50_ms"],
                data["p99_ms"],
                cpu.get("gateway"),
                cpu.get("upstream") if name.startswith("fake") else None,
                cpu["loadgen"],
                cpu["others"],
                data["non_2xx"] + data["socket_errors"],
                goal_met(name, ratio),
            ]
        )
    config = result["config"]
    print()
    print(
        f"Throughput, one worker ({config['loadgen']}, {config['connections']} connections, "
        f"{config['duration_s']:g} s each); ratio = req/s ÷ {FLOOR} of the same worker"
    )
    headers = ["scenario", "req/s", "ratio", "goal", "server CPU ms/req", "ratio by CPU cost"]
    headers += ["p50 ms", "p99 ms", "server CPU %"]
    headers += ["upstream CPU %", "loadgen CPU %", "others' CPU %", "errors", "goal met"]
    print(table(headers, rows))


def plot(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    plt = pyplot(args)
    if plt is None:
        return []
    names = list(result["scenarios"])
    values = [result["scenarios"][n]["requests_per_s"] for n in names]
    floor = result["scenarios"][FLOOR]["requests_per_s"]
    colors = ["tab:grey" if n.startswith("floor") else "tab:blue" for n in names]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.bar(names, values, color=colors)
    labelled = False
    for bar, name, value in zip(bars, names, values, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            value,
            f"{value:.0f}\n({value / floor:.0%})",
            ha="center",
            va="bottom",
            fontsize=8,
        )
        if name in GOALS:
            left, width = bar.get_x(), bar.get_width()
            ax.hlines(
                GOALS[name] * floor,
                left,
                left + width,
                color="red",
                linestyle="--",
                label=None if labelled else "goal (share of the floor)",
            )
            labelled = True
    ax.set_ylabel("requests / s")
    ax.set_ylim(0, max(values) * 1.25)
    ax.set_title(
        f"One worker: completions/s vs GET /healthz ({result['config']['loadgen']}, "
        f"{result['config']['connections']} connections)"
    )
    ax.legend()
    fig.tight_layout()
    path = args.out / "throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--processes", type=int, default=2, help="Python load generator processes")
    args = parser.parse_args(argv)
    result = trio.run(amain, args)
    result["environment"] = environment()
    result["plots"] = plot(args, result)
    path = write_json(args.out, "throughput", result)
    print_report(result)
    print(f"\nwrote {path}" + "".join(f", {p}" for p in result["plots"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
