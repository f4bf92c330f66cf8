"""Two checkouts of the gateway under the same load, with a profile of each:
``python -m bench.compare --base DIR [--current DIR]``.

Each checkout runs as ``python -m gateway.cli serve`` (one worker) from its own directory with
``PYTHONPATH=DIR`` (same interpreter and packages), with the same generated configuration and
the same fake upstream (one process, 8 tokens, zero delay). Both are started first (the idle one
costs nothing) and take turns under the same load (``--connections`` keep-alive connections,
``wrk`` when installed), ``--rounds`` rounds with the order alternating, so that a busy moment of
the machine hits both alike:

- ``healthz``: ``GET /healthz``; ``fake_json`` / ``fake_stream``: chat completions through the
  fake upstream, non-streaming / streaming;
- requests/s (mean of the rounds), and the gateway's CPU per request: ``/proc/<pid>/stat``
  utime + stime over the runs ÷ requests; the CPU % of the gateway, the fake upstream and the
  machine's other processes;
- then (not during the measured runs) a sampling profile of each completion scenario under the
  same load: ``py-spy record --nonblocking`` at ``--rate`` for ``--profile-seconds``,
  summarised by ``bench._profile`` (where the samples fall: admission, upstream HTTP client,
  Hypercorn/Quart, socket calls, trio, logging, our code).

Prints one table for both and writes ``compare.json``; the raw profiles (py-spy's collapsed
stacks) and the gateways' logs go to ``logs/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bench._load import LoadOptions, ProcessesCpu, Scenario, choose_tool, run_load
from bench._profile import summarise
from bench.client import Endpoint, chat_body, tagged_text
from bench.common import (
    DEFAULT_TOKEN,
    REPO,
    cpu_seconds,
    environment,
    free_port,
    gateway_config,
    open_upstream,
    parser_for,
    raise_fd_limit,
    spawned,
    table,
    wait_healthy,
    write_json,
)

KNOBS = {"tokens": 8, "token_delay": 0}
PROFILED = ("fake_json", "fake_stream")


def scenario_for(name: str, url: str) -> Scenario:
    """``healthz``, ``fake_json`` or ``fake_stream`` against the gateway at ``url``."""
    if name == "healthz":
        return Scenario(name, url + "/healthz")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {DEFAULT_TOKEN}"}
    body = chat_body("openclaw", tagged_text("cmp", KNOBS), stream=name == "fake_stream")
    return Scenario(name, url + "/v1/chat/completions", "POST", headers, body)


def check_checkout(checkout: Path) -> None:
    """Fail unless ``python -m`` from ``checkout`` with ``PYTHONPATH`` imports its gateway."""
    code = "import gateway, sys; sys.stdout.write(gateway.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=checkout,
        env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    found = Path(done.stdout).resolve()
    if not found.is_relative_to(checkout):
        raise SystemExit(f"{checkout}: imports the gateway from {found}, not from the checkout")


async def profile(pid: int, seconds: float, rate: int, path: Path) -> dict[str, Any]:
    """Sample ``pid`` with py-spy (without pausing it) into ``path``; summarise the samples."""
    cmd = [_py_spy(), "record", "-p", str(pid), "-d", str(max(1, round(seconds)))]
    cmd += ["-r", str(rate), "-f", "raw", "-o", str(path), "--nonblocking"]
    await trio.run_process(cmd, capture_stdout=True, capture_stderr=True)
    return summarise(await trio.Path(path).read_text())


def _py_spy() -> str:
    local = Path(sys.executable).parent / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        raise SystemExit("py-spy is not installed (pip install py-spy), or use --no-profile")
    return found


@asynccontextmanager
async def open_checkout(
    args: argparse.Namespace, label: str, checkout: Path, config: Path, tmp: Path
) -> AsyncIterator[tuple[str, int]]:
    """``gateway serve`` of ``checkout`` for the block; yields its URL and pid."""
    port = free_port()
    state = tmp / f"state-{label}"
    state.mkdir()
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    cmd += ["--port", str(port), "--log-level", args.log_level]
    env = {"PYTHONPATH": str(checkout), "OPENCLAW_STATE_DIR": str(state), "HOME": str(tmp)}
    log = args.out / "logs" / f"compare-{label}-gateway.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    async with spawned(cmd, log=log, env=env, cwd=checkout) as process:
        url = f"http://127.0.0.1:{port}"
        await wait_healthy(Endpoint.parse(url), process, 30)
        yield url, process.pid


async def measure(
    args: argparse.Namespace,
    load: LoadOptions,
    scenario: Scenario,
    pid: int,
    upstream: int,
    tmp: Path,
) -> dict[str, Any]:
    """One warmed-up load run, with the gateway's CPU seconds and everyone's CPU %."""
    await run_load(load, scenario, args.warmup, tmp)
    cpu = ProcessesCpu({"gateway": pid, "upstream": upstream})
    before = cpu_seconds(pid) or 0.0
    cpu.start()
    result = await run_load(load, scenario, args.duration, tmp)
    result["cpu"] = cpu.stop(result["loadgen_cpu_s"])
    result["gateway_cpu_s"] = (cpu_seconds(pid) or 0.0) - before
    return result


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one scenario on one checkout as one measurement."""
    requests = sum(r["requests"] or 0 for r in rounds)
    cpu_s = sum(r["gateway_cpu_s"] for r in rounds)
    wall = sum(r["cpu"]["wall_s"] for r in rounds)
    return {
        "requests_per_s": sum(r["requests_per_s"] for r in rounds) / len(rounds),
        "rounds_per_s": [r["requests_per_s"] for r in rounds],
        "gateway_cpu_ms_per_request": 1000 * cpu_s / requests if requests else None,
        "cpu": {
            name: sum(r["cpu"][name] * r["cpu"]["wall_s"] for r in rounds) / wall
            for name in rounds[0]["cpu"]
            if name != "wall_s"
        },
        "errors": sum(r["non_2xx"] + r["socket_errors"] for r in rounds),
    }


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(args.connections * 8 + 1000)
    load = LoadOptions(choose_tool(args.loadgen), args.connections, args.processes)
    checkouts = {"before": args.base, "after": args.current}
    rounds: dict[tuple[str, str], list[dict[str, Any]]] = {}
    profiles: dict[str, dict[str, Any]] = {label: {} for label in checkouts}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        tmp_path = Path(tmp)
        async with open_upstream(log=tmp_path / "upstream.log") as up, AsyncExitStack() as stack:
            config = gateway_config(DEFAULT_TOKEN, up.base_url, max_concurrent=1024)
            config_path = tmp_path / "openclaw.json"
            config_path.write_text(json.dumps(config, indent=2))
            running = {}
            for label, checkout in checkouts.items():  # both started: idle, they cost nothing
                opened = open_checkout(args, label, checkout, config_path, tmp_path)
                running[label] = await stack.enter_async_context(opened)
            print(
                f"compare: {load.tool}, {args.connections} connections, {args.rounds} rounds of "
                f"{args.duration:g} s"
            )
            for index in range(args.rounds):
                order = list(running) if index % 2 == 0 else list(running)[::-1]
                for name in ("healthz", *PROFILED):
                    for label in order:
                        url, pid = running[label]
                        scenario = scenario_for(name, url)
                        result = await measure(args, load, scenario, pid, up.process.pid, tmp_path)
                        rounds.setdefault((label, name), []).append(result)
                        print(
                            f"  round {index + 1}, {label} {name}: "
                            f"{result['requests_per_s']:.0f}/s, others' CPU "
                            f"{result['cpu']['others']:.0f} %"
                        )
            for label, (url, pid) in running.items():
                for name in () if args.no_profile else PROFILED:
                    scenario = scenario_for(name, url)
                    raw = args.out / "logs" / f"compare-{label}-{name}.pyspy.txt"
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(
                            run_load, load, scenario, args.profile_seconds + 2, tmp_path
                        )
                        await trio.sleep(1)
                        profiles[label][name] = await profile(
                            pid, args.profile_seconds, args.rate, raw
                        )
    results: dict[str, Any] = {
        label: {"checkout": str(checkout), "scenarios": {}, "profiles": profiles[label]}
        for label, checkout in checkouts.items()
    }
    for (label, name), measured in rounds.items():
        results[label]["scenarios"][name] = combine(measured)
    return {
        "checkouts": results,
        "config": {
            "loadgen": load.tool,
            "connections": args.connections,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "profile_seconds": args.profile_seconds,
            "profile_rate": args.rate,
            "log_level": args.log_level,
            "upstream": "bench._upstream (one process), 8 tokens, zero delay",
        },
    }


def print_report(result: dict[str, Any]) -> None:
    checkouts = result["checkouts"]
    rows = []
    for name in ("healthz", *PROFILED):
        row: list[Any] = [name]
        for label in checkouts:
            data = checkouts[label]["scenarios"][name]
            cpu = data["cpu"]
            row += [data["requests_per_s"], data["gateway_cpu_ms_per_request"]]
            row += [f"{cpu['gateway']:.0f} / {cpu['upstream']:.0f} / {cpu['others']:.0f}"]
        rows.append(row)
    headers = ["scenario"]
    for label in checkouts:
        headers += [f"{label}: req/s", f"{label}: gateway CPU ms/req"]
        headers += [f"{label}: CPU % gateway / upstream / others"]
    config = result["config"]
    print()
    print(f"Same load on both ({config['loadgen']}, {config['connections']} connections)")
    print(table(headers, rows))
    for name in PROFILED:
        summaries = {label: c["profiles"].get(name) for label, c in checkouts.items()}
        if not all(summaries.values()):
            continue
        print()
        print(
            f"Where the gateway's CPU goes, {name}: % of the profile's busy samples, and that "
            "share of the CPU per completion measured above"
        )
        print(table(["part", *summaries], profile_rows(checkouts, name)))


def profile_rows(checkouts: dict[str, Any], name: str) -> list[list[str]]:
    """Per part of the profiles of ``name``: ``"12.3 % (0.45 ms)"`` per checkout."""
    parts: list[str] = []
    for checkout in checkouts.values():
        parts += [p for p in checkout["profiles"][name]["categories"] if p not in parts]
    rows = []
    for part in parts:
        row = [part]
        for checkout in checkouts.values():
            share = checkout["profiles"][name]["categories"].get(part, 0.0)
            per_request = checkout["scenarios"][name]["gateway_cpu_ms_per_request"] or 0.0
            row.append(f"{share:.1f} % ({share * per_request / 100:.2f} ms)")
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__, target=False)
    parser.add_argument("--base", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--current", type=Path, default=REPO, help="the other checkout")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each, alternated")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--processes", type=int, default=2, help="Python load generator processes")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--log-level", default="info", help="the gateways' --log-level")
    args = parser.parse_args(argv)
    args.base, args.current = args.base.resolve(), args.current.resolve()
    for checkout in (args.base, args.current):
        check_checkout(checkout)
    result = trio.run(amain, args)
    result["environment"] = environment()
    path = write_json(args.out, "compare", result)
    print_report(result)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
