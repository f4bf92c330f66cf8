"""Run every benchmark, one after the other, and summarise them: ``python -m bench.run_all``.

Each benchmark runs as its own process (its own gateway and fake upstream) with ``--out``
(default ``bench/results/latest``), under a time limit. Then ``summary.md`` / ``summary.json``
hold one table of every goal, and ``--update-readme`` puts that table into ``bench/README.md``
between its ``results`` markers. About 6 minutes on a 2-core machine (``--quick``: about 2).

``workers`` and ``startup`` start gateways of their own in every case, so with ``--target`` they
are skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._summary import summary_rows
from bench.common import REPO, RESULTS, environment, table

README = REPO / "bench" / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# name, extra arguments, time limit (s)
BENCHMARKS: list[tuple[str, list[str], int]] = [
    ("cancel", [], 300),
    ("overhead", [], 180),
    ("throughput", [], 180),
    ("scale", [], 240),
    ("workers", [], 150),
    ("startup", [], 120),
]
QUICK = {
    "cancel": ["--aborts", "1000", "--isolated", "5"],
    "overhead": ["--rounds", "2", "--block-seconds", "0.75", "--long-tokens", "3000"],
    "throughput": ["--duration", "3", "--warmup", "1"],
    "scale": ["--levels", "50", "200", "--window", "4"],
    "workers": ["--duration", "3", "--warmup", "1"],
    "startup": ["--runs", "3", "--import-runs", "1"],
}
# The benchmarks that can measure a gateway someone else started (``--target`` and friends).
TARGETABLE = {"cancel", "overhead", "throughput", "scale"}


def run(args: argparse.Namespace) -> dict[str, Any]:
    status: dict[str, Any] = {}
    common = ["--out", str(args.out)]
    if args.no_plots:
        common.append("--no-plots")
    target: list[str] = []
    for name in ("target", "token", "model", "upstream_port", "gateway_pid"):
        value = getattr(args, name)
        if value is not None:
            target += [f"--{name.replace('_', '-')}", str(value)]
    for name, extra, limit in BENCHMARKS:
        if name in args.skip:
            continue
        if args.target and name not in TARGETABLE:
            print(f"\n=== {name}: skipped (it starts its own gateways; --target given)")
            continue
        cmd = [sys.executable, "-m", f"bench.{name}", *common]
        cmd += target if name in TARGETABLE else []
        cmd += QUICK[name] if args.quick else extra
        print(f"\n=== {name}: {' '.join(cmd[2:])}", flush=True)
        started = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=REPO, timeout=limit, check=False)
            status[name] = {"exit": done.returncode, "seconds": time.monotonic() - started}
        except subprocess.TimeoutExpired:
            status[name] = {"exit": "timeout", "seconds": time.monotonic() - started}
        print(f"=== {name}: {status[name]['seconds']:.0f} s", flush=True)
    return status


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
