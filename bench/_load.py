"""Closed-loop HTTP load for the benchmarks that count requests per second, and the CPU each
process used meanwhile.

``run_load`` sends one ``Scenario`` for some seconds over ``connections`` keep-alive connections:
with ``wrk`` (one thread, POST bodies from a Lua script) when it is installed, else with
``processes`` processes of ``bench._loadgen`` (Python, which may itself be the bottleneck). It
returns requests/s, latency percentiles, errors and the load generator's own CPU seconds (read
from ``RUSAGE_CHILDREN``: the load generator is the only child that ends during a run).

``ProcessesCpu`` says what every named process (gateway workers, fake upstream), the load
generator, this process and everything else on the machine did with the cores during a run.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench.common import cpu_seconds, tree_cpu_seconds


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of request, sent again and again."""

    name: str
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class LoadOptions:
    tool: str  # "wrk" or "python"
    connections: int
    processes: int = 2  # Python load generator processes


def choose_tool(wanted: str) -> str:
    """``wrk`` if installed and not refused (``wanted``: auto, wrk or python)."""
    if wanted == "python":
        return "python"
    if shutil.which("wrk"):
        return "wrk"
    if wanted == "wrk":
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    return "python"


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def run_load(
    options: LoadOptions, scenario: Scenario, seconds: float, tmp: Path
) -> dict[str, Any]:
    """Load ``scenario`` for ``seconds``; raises ``RuntimeError`` if the tool failed."""
    before = children_cpu_seconds()
    if options.tool == "wrk":
        result = await _run_wrk(options, scenario, seconds, tmp)
    else:
        result = await _run_python(options, scenario, seconds, tmp)
    result["loadgen_cpu_s"] = children_cpu_seconds() - before
    return result


def lua_script(scenario: Scenario, directory: Path) -> Path:
    lines = [f'wrk.method = "{scenario.method}"']
    if scenario.body:
        lines.append(f"wrk.body = [==[{scenario.body.decode()}]==]")
    for name, value in scenario.headers.items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    path = directory / f"{scenario.name}.lua"
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


async def _run_wrk(
    options: LoadOptions, scenario: Scenario, seconds: float, tmp: Path
) -> dict[str, Any]:
    script = lua_script(scenario, tmp)
    cmd = ["wrk", "-t1", f"-c{options.connections}", f"-d{max(1, round(seconds))}s"]
    cmd += ["--latency", "-s", str(script), scenario.url]
    done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
    result = parse_wrk(done.stdout.decode())
    if result["requests_per_s"] is None:
        raise RuntimeError(f"wrk failed: {done.stdout.decode()} {done.stderr.decode()}")
    return result


async def _run_python(
    options: LoadOptions, scenario: Scenario, seconds: float, tmp: Path
) -> dict[str, Any]:
    body_file = tmp / f"{scenario.name}.body"
    body_file.write_bytes(scenario.body)
    per_process = max(1, options.connections // options.processes)
    cmd = [sys.executable, "-m", "bench._loadgen", "--url", scenario.url]
    cmd += ["--method", scenario.method, "--headers", json.dumps(scenario.headers)]
    cmd += ["--body-file", str(body_file), "--connections", str(per_process)]
    cmd += ["--duration", str(seconds)]
    results: list[dict[str, Any]] = []

    async def one() -> None:
        done = await trio.run_process(cmd, capture_stdout=True, check=True, cwd=Path.cwd())
        results.append(json.loads(done.stdout))

    async with trio.open_nursery() as nursery:
        for _ in range(options.processes):
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


def _machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class ProcessesCpu:
    """CPU of named processes between ``start()`` and ``stop()``, in % of one core.

    ``tree``: count each named process with its descendants (``hypercorn`` runs its worker in a
    child process); without it each is counted alone, so a master and its workers can be named
    separately. ``stop(loadgen_cpu_s)`` also reports the load generator (its CPU seconds, from
    ``run_load``), this process, the whole machine and the rest: ``others`` are processes that
    are not ours (other users of the machine).
    """

    def __init__(self, pids: dict[str, int], *, tree: bool = True) -> None:
        self._pids = pids
        self._read = tree_cpu_seconds if tree else (lambda pid: cpu_seconds(pid) or 0.0)
        self._t0 = 0.0
        self._start: dict[str, float] = {}
        self._machine0 = 0.0
        self._own0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: self._read(pid) for name, pid in self._pids.items()}
        self._machine0 = _machine_busy_seconds()
        self._own0 = time.process_time()

    def stop(self, loadgen_cpu_s: float = 0.0) -> dict[str, float]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        out = {
            name: 100 * (self._read(pid) - self._start[name]) / wall
            for name, pid in self._pids.items()
        }
        out["loadgen"] = 100 * loadgen_cpu_s / wall
        out["bench"] = 100 * (time.process_time() - self._own0) / wall
        ours = sum(out.values())
        machine = 100 * (_machine_busy_seconds() - self._machine0) / wall
        out["machine"] = machine
        out["others"] = max(0.0, machine - ours)
        out["wall_s"] = wall
        return out
