"""Run every benchmark, one after the other, and summarise them: ``python -m bench.run_all``.

Each benchmark runs as its own process (its own gateway and fake upstream) with ``--out``
(default ``bench/results/latest``), under a time limit. Then ``summary.md`` / ``summary.json``
hold one table of every goal, and ``--update-readme`` puts that table into ``bench/README.md``
between its ``results`` markers. About 5 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS, environment, fmt, table

README = REPO / "bench" / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# name, extra arguments, time limit (s)
BENCHMARKS: list[tuple[str, list[str], int]] = [
    ("cancel", [], 300),
    ("overhead", [], 180),
    ("throughput", [], 180),
    ("scale", [], 240),
]
QUICK = {
    "cancel": ["--aborts", "1000", "--isolated", "5"],
    "overhead": ["--rounds", "2", "--block-seconds", "0.75", "--long-tokens", "3000"],
    "throughput": ["--duration", "3", "--warmup", "1"],
    "scale": ["--levels", "50", "200", "--window", "4"],
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    status: dict[str, Any] = {}
    common = ["--out", str(args.out)]
    for name in ("target", "token", "model", "upstream_port", "gateway_pid"):
        value = getattr(args, name)
        if value is not None:
            common += [f"--{name.replace('_', '-')}", str(value)]
    if args.no_plots:
        common.append("--no-plots")
    for name, extra, limit in BENCHMARKS:
        if name in args.skip:
            continue
        cmd = [
            sys.executable,
            "-m",
            f"bench.{name}",
            *common,
            *(QUICK[name] if args.quick else extra),
        ]
        print(f"\n=== {name}: {' '.join(cmd[2:])}", flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=REPO, timeout=limit, check=False)
            status[name] = {"exit": done.returncode, "seconds": time.monotonic() - started}
        except subprocess.TimeoutExpired:
            status[name] = {"exit": "timeout", "seconds": time.monotonic() - started}
        print(f"=== {name}: {status[name]['seconds']:.0f} s", flush=True)
    return status


def load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def summary_rows(out: Path) -> list[list[Any]]:
    """One row per goal: benchmark, measure, value, goal, met."""
    rows: list[list[Any]] = []
    cancel = load(out, "cancel")
    if cancel:
        concurrency = cancel["config"]["concurrency"]
        for phase, data in cancel["phases"].items():
            lat = data["latency_ms"]
            solo = cancel.get("isolated", {}).get(phase, {}).get("latency_ms", {})
            until = "left queue" if "queue" in data["measured_as"] else "upstream closed"
            rows.append(
                [
                    "cancel",
                    f"{phase}: close → {until}, p50 / p95 / p99 / max ms "
                    f"({concurrency} in flight; one at a time p99 {fmt(solo.get('p99'))})",
                    " / ".join(fmt(lat[k]) for k in ("p50", "p95", "p99", "max")),
                    "p99 ≤ 5 ms",
                    lat["p99"] is not None and lat["p99"] <= 5.0 and data["not_observed"] == 0,
                ]
            )
        leaks = cancel["leaks"]
        names = ["active_runs", "queued_runs", "lanes_held", "lanes_waiting", "lane_tickets"]
        names += ["upstream_connections_open", "tasks_delta", "fds_delta"]
        left = {n: leaks.get(n) for n in names}
        total = sum(max(0, v or 0) for v in left.values())  # fewer tasks/fds than before: fine
        rows.append(
            [
                "cancel",
                f"leaks after {leaks['aborts']} aborts (runs, lanes, tickets, upstream "
                "connections, tasks, fds)",
                ", ".join(f"{k}={v}" for k, v in left.items()),
                "all 0",
                total == 0 and leaks["aborts"] >= 10_000,
            ]
        )
        if "rss_before_mb" in leaks:
            rows.append(
                [
                    "cancel",
                    "gateway RSS before → after the aborts",
                    f"{leaks['rss_before_mb']:.1f} → {leaks['rss_after_mb']:.1f} MB",
                    "",
                    "",
                ]
            )
    overhead = load(out, "overhead")
    if overhead:
        for concurrency, entry in overhead["short"].items():
            added = entry["added"]
            rows.append(
                [
                    "overhead",
                    f"added TTFT p50 / p99, c={concurrency} (ms)",
                    f"{fmt(added['ttft_p50_ms'])} / {fmt(added['ttft_p99_ms'])}",
                    "p50 ≤ 2 ms" if concurrency == "1" else "",
                    added["ttft_p50_ms"] <= 2.0 if concurrency == "1" else "",
                ]
            )
            rows.append(
                [
                    "overhead",
                    f"added total p50 / p99, c={concurrency} (ms)",
                    f"{fmt(added['total_p50_ms'])} / {fmt(added['total_p99_ms'])}",
                    "",
                    "",
                ]
            )
        long = overhead["long"]
        rows.append(
            [
                "overhead",
                f"added time per token, {long['tokens']}-token zero-delay stream "
                f"(gateway CPU per token {fmt(long.get('gateway_cpu_per_token_ms'), 3)} ms)",
                f"{fmt(long['added_per_token_ms'], 4)} ms",
                "≤ 0.1 ms",
                long["added_per_token_ms"] <= 0.1,
            ]
        )
    throughput = load(out, "throughput")
    if throughput:
        scenarios = throughput["scenarios"]
        floor = scenarios["floor_health"]["requests_per_s"]
        bare = scenarios.get("floor_bare", {}).get("requests_per_s")
        rows.append(
            [
                "throughput",
                f"floor: GET /health of the gateway (bare quart-trio app: {fmt(bare, 0)}/s)",
                f"{floor:.0f}/s",
                "",
                "",
            ]
        )
        for name, data in scenarios.items():
            if name.startswith("floor"):
                continue
            rows.append(
                [
                    "throughput",
                    f"{name} completions/s (ratio to floor)",
                    f"{data['requests_per_s']:.0f}/s ({data['ratio_to_floor']:.0%})",
                    "≥ 60 %",
                    data["ratio_to_floor"] >= 0.6,
                ]
            )
    scale = load(out, "scale")
    if scale:
        for level in scale["levels"]:
            n = level["streams"]
            rows.append(
                [
                    "scale",
                    f"{n} open streams: RSS, per stream, flowing",
                    f"{fmt(level['rss_mb'], 1)} MB, {fmt(level['rss_per_stream_kb'], 1)} KB, "
                    f"{level['streams_flowing']}/{n}",
                    "≤ 150 MB, all flowing" if n == 2000 else "",
                    (level["rss_mb"] or 1e9) <= 150 and level["streams_flowing"] == n
                    if n == 2000
                    else "",
                ]
            )
    return rows


def write_summary(out: Path, status: dict[str, Any]) -> str:
    rows = summary_rows(out)
    text = table(["benchmark", "measure", "value", "goal", "met"], rows)
    env = environment()
    header = (
        f"Run {env['when']} on {env['cpus']} CPUs, Python {env['python']} "
        f"(`python -m bench.run_all`; durations: "
        + ", ".join(f"{k} {v['seconds']:.0f} s" for k, v in status.items())
        + ")."
    )
    (out / "summary.md").write_text(header + "\n\n" + text + "\n")
    (out / "summary.json").write_text(
        json.dumps({"environment": env, "status": status, "rows": rows}, indent=2) + "\n"
    )
    return header + "\n\n" + text


def update_readme(summary: str, out: Path) -> None:
    text = README.read_text()
    if START not in text or END not in text:
        print(f"{README} has no {START} ... {END} markers: not updated")
        return
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    relative = out.relative_to(REPO / "bench") if out.is_relative_to(REPO / "bench") else out
    plots = [p.name for p in sorted(out.glob("*.png"))]
    images = "\n".join(f"![{name}]({relative}/{name})" for name in plots)
    README.write_text(f"{before}{START}\n{summary}\n\n{images}\n{END}{after}")
    print(f"updated {README}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "latest")
    parser.add_argument("--quick", action="store_true", help="small sizes, about 2 minutes")
    parser.add_argument("--skip", nargs="*", default=[], choices=[b[0] for b in BENCHMARKS])
    parser.add_argument("--update-readme", action="store_true")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--target")
    parser.add_argument("--token")
    parser.add_argument("--model")
    parser.add_argument("--upstream-port", type=int)
    parser.add_argument("--gateway-pid", type=int)
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    status = run(args)
    summary = write_summary(args.out, status)
    print("\n" + summary)
    if args.update_readme:
        update_readme(summary, args.out)
    print(f"\nall benchmarks: {time.monotonic() - started:.0f} s")
    failed = [name for name, s in status.items() if s["exit"] != 0]
    if failed:
        print(f"did not finish cleanly: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
