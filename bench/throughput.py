"""Completions per second on one gateway worker, against the framework floor, in one run.

Scenarios, each a closed loop of ``--connections`` keep-alive connections for ``--duration``
seconds (after a short warm-up):

- ``floor_health``: ``GET /health`` of the same gateway process (the floor: same Hypercorn trio
  worker, same Quart app and ASGI wrappers, no completion);
- ``floor_bare``: ``GET /health`` of a bare quart-trio app served the same way
  (``hypercorn -k trio``), for reference;
- ``echo_json`` / ``echo_stream``: chat completions from the built-in ``echo`` model (no
  upstream; it streams the 8-word message back word by word), non-streaming / streaming;
- ``fake_json`` / ``fake_stream``: the same through the fake upstream (8 tokens, zero delay, a
  separate process) as provider ``fake``.

Ratio = completions/s ÷ ``floor_health`` requests/s. The load generator is ``wrk`` when it is
installed (``apt-get install wrk``; POST bodies through a Lua script), else ``--processes``
Python processes (``bench._loadgen``), which may themselves be the bottleneck. The gateway's CPU
use during each scenario says which side was saturated (~100 %: the gateway).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from bench.client import Endpoint, chat_body, tagged_text
from bench.common import (
    CpuMonitor,
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

GOAL_RATIO = 0.60
TEXT = "hello from the benchmark one two three four five"


def scenarios(args: argparse.Namespace, gateway: str, bare: str | None, token: str | None) -> list:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    post = {"Content-Type": "application/json", **auth}
    chat = gateway + "/v1/chat/completions"
    fake_knobs = {"tokens": 8, "token_delay": 0}
    out: list[dict[str, Any]] = [{"name": "floor_health", "url": gateway + "/health"}]
    if bare:
        out.append({"name": "floor_bare", "url": bare + "/health"})
    for stream in (False, True):
        suffix = "stream" if stream else "json"
        out.append(
            {
                "name": f"echo_{suffix}",
                "url": chat,
                "method": "POST",
                "headers": post,
                "body": chat_body(args.model, TEXT, stream=stream),
            }
        )
    if not args.target:
        for stream in (False, True):
            suffix = "stream" if stream else "json"
            body = chat_body(args.model + "/fake", tagged_text("tp", fake_knobs), stream=stream)
            out.append(
                {
                    "name": f"fake_{suffix}",
                    "url": chat,
                    "method": "POST",
                    "headers": post,
                    "body": body,
                }
            )
    return out


def lua_script(scenario: dict[str, Any], directory: Path) -> Path:
    lines = [f'wrk.method = "{scenario.get("method", "GET")}"']
    if scenario.get("body"):
        lines.append(f"wrk.body = [==[{scenario['body'].decode()}]==]")
    for name, value in scenario.get("headers", {}).items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    path = directory / f"{scenario['name']}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def parse_wrk(output: str) -> dict[str, Any]:
    def latency(label: str) -> float | None:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    done = re.search(r"(\d+) requests in ([\d.]+)(\w+),", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return {
        "requests_per_s": float(rps.group(1)) if rps else None,
        "requests": int(done.group(1)) if done else None,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
    }


async def run_wrk(
    args: argparse.Namespace, scenario: dict[str, Any], seconds: float, tmp: Path
) -> dict[str, Any]:
    script = lua_script(scenario, tmp)
    cmd = [
        "wrk",
        "-t1",
        f"-c{args.connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-s",
        str(script),
        scenario["url"],
    ]
    done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    result = parse_wrk(done.stdout.decode())
    if result["requests_per_s"] is None:
        raise RuntimeError(f"wrk failed: {done.stdout.decode()} {done.stderr.decode()}")
    return result


async def run_python(
    args: argparse.Namespace, scenario: dict[str, Any], seconds: float, tmp: Path
) -> dict[str, Any]:
    body_file = tmp / f"{scenario['name']}.body"
    body_file.write_bytes(scenario.get("body", b""))
    per_process = max(1, args.connections // args.processes)
    cmd = [
        sys.executable,
        "-m",
        "bench._loadgen",
        "--url",
        scenario["url"],
        "--method",
        scenario.get("method", "GET"),
        "--headers",
        json.dumps(scenario.get("headers", {})),
        "--body-file",
        str(body_file),
        "--connections",
        str(per_process),
        "--duration",
        str(seconds),
    ]
    results: list[dict[str, Any]] = []

    async def one() -> None:
        done = await trio.run_process(cmd, capture_stdout=True, check=True, cwd=Path.cwd())
        results.append(json.loads(done.stdout))

    async with trio.open_nursery() as nursery:
        for _ in range(args.processes):
            nursery.start_soon(one)
    ok = sum(r["ok"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    return {
        "requests_per_s": ok / elapsed,
        "requests": ok,
        "non_2xx": sum(r["non_2xx"] for r in results),
        "socket_errors": sum(r["errors"] for r in results),
        "p50_ms": max((r["p50_ms"] or 0) for r in results),
        "p99_ms": max((r["p99_ms"] or 0) for r in results),
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(args.connections * 4 + 1000)
    loadgen = "wrk" if shutil.which("wrk") and args.loadgen != "python" else "python"
    if args.loadgen == "wrk" and loadgen != "wrk":
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    run = run_wrk if loadgen == "wrk" else run_python
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
                print(f"throughput: load generator {loadgen}, {args.connections} connections")
                for scenario in scenarios(args, gateway, bare_url, stack.token):
                    await run(args, scenario, args.warmup, tmp_path)
                    pid = bare.pid if scenario["name"] == "floor_bare" else stack.gateway_pid
                    upstream_pid = stack.upstream.process.pid if stack.upstream else None
                    monitor = CpuMonitor()
                    monitor.start(pid, upstream_pid)
                    result = await run(args, scenario, args.duration, tmp_path)
                    result["cpu"] = monitor.stop()
                    results[scenario["name"]] = result
                    print(
                        f"  {scenario['name']}: {result['requests_per_s']:.0f}/s, server CPU "
                        f"{result['cpu']['gateway_cpu_pct']:.0f} %, errors "
                        f"{result['non_2xx'] + result['socket_errors']}"
                    )
    floor = results["floor_health"]["requests_per_s"]
    for _name, result in results.items():
        result["ratio_to_floor"] = result["requests_per_s"] / floor if floor else None
    return {
        "scenarios": results,
        "config": {
            "loadgen": loadgen,
            "connections": args.connections,
            "duration_s": args.duration,
            "processes": args.processes if loadgen == "python" else None,
            "target": args.target or "gateway serve (one process, Hypercorn trio worker)",
            "models": "echo: built-in echo/echo (no upstream); fake: bench._upstream, 8 tokens, "
            "zero delay",
        },
    }


def print_report(result: dict[str, Any]) -> None:
    rows = []
    for name, data in result["scenarios"].items():
        floor = name.startswith("floor")
        ratio = data["ratio_to_floor"]
        rows.append(
            [
                name,
                data["requests_per_s"],
                ratio,
                data["p50_ms"],
                data["p99_ms"],
                data["cpu"]["gateway_cpu_pct"],
                data["cpu"]["other_cpu_pct"],
                data["non_2xx"] + data["socket_errors"],
                "" if floor else ratio is not None and ratio >= GOAL_RATIO,
            ]
        )
    config = result["config"]
    print()
    print(
        f"Throughput, one worker ({config['loadgen']}, {config['connections']} connections, "
        f"{config['duration_s']:g} s each); ratio = req/s ÷ floor_health (goal >= 60 %)"
    )
    headers = ["scenario", "req/s", "ratio", "p50 ms", "p99 ms", "server CPU %"]
    headers += ["others' CPU %", "errors", "goal met"]
    print(table(headers, rows))


def plot(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    plt = pyplot(args)
    if plt is None:
        return []
    names = list(result["scenarios"])
    values = [result["scenarios"][n]["requests_per_s"] for n in names]
    floor = result["scenarios"]["floor_health"]["requests_per_s"]
    colors = ["tab:grey" if n.startswith("floor") else "tab:blue" for n in names]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.bar(names, values, color=colors)
    for bar, value in zip(bars, values, strict=True):
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            value,
            f"{value:.0f}\n({value / floor:.0%})",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.axhline(GOAL_RATIO * floor, color="red", linestyle="--", linewidth=1, label="60 % of floor")
    ax.set_ylabel("requests / s")
    ax.set_ylim(0, max(values) * 1.25)
    ax.set_title(
        f"One worker: completions/s vs the floor ({result['config']['loadgen']}, "
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
    parser.add_argument("--connections", type=int, default=50)
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
