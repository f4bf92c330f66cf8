"""Start to ready: from starting the process to the first 200 on ``GET /readyz``, and where the
import time goes.

Cases, each started ``--runs`` times (after one warm-up start that is not counted; the cases take
turns, so a busy moment of the machine hits them alike), on a free loopback port:

- ``serve_default``: ``gateway serve --port P``, no configuration file (all defaults);
- ``serve_agents``: ``gateway serve --config F --port P``, F with one provider (an
  ``openai-completions`` upstream that is never contacted) and 3 agents;
- ``hypercorn``: ``hypercorn -k trio --bind 127.0.0.1:P gateway.app:app`` with
  ``OPENCLAW_CONFIG_PATH=F``.

Each case keeps one state directory over its runs (the warm-up creates it, like a restart). The
time runs from just before ``Popen`` to the status line of the first 200 from ``/readyz``, polled
every ``--poll-ms`` on a new connection (refused until the server listens, 503 until it is
ready). Then SIGTERM, and the time until the process has exited.

Imports: ``python -X importtime -c "import gateway.app"`` (``--import-runs`` times, the run with
the median total kept): the total, the 10 modules with the most time of their own, and that time
summed per top-level package. For scale: the wall time of ``python -c pass`` (the interpreter
alone) and of ``python -c "import gateway.app"``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, environment, free_port, parser_for, percentile, table, write_json

GOAL_SECONDS = 1.0
CASES = ("serve_default", "serve_agents", "hypercorn")


def agents_config() -> dict[str, Any]:
    provider = {
        "baseUrl": "http://127.0.0.1:9/v1",
        "api": "openai-completions",
        "models": [{"id": "small"}, {"id": "large"}],
    }
    agents = [
        {"id": "main", "default": True},
        {"id": "writer", "model": "up/large", "systemPrompt": "You write."},
        {"id": "helper", "model": {"primary": "up/small", "fallbacks": ["echo/echo"]}},
    ]
    return {
        "gateway": {
            "auth": {"mode": "token", "token": "startup-token"},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {"providers": {"up": provider}},
        "agents": {"defaults": {"model": "up/small"}, "list": agents},
    }


def command(case: str, port: int, config: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and the extra environment of ``case``."""
    if case == "hypercorn":
        cmd = [sys.executable, "-m", "hypercorn", "-k", "trio", "--bind", f"127.0.0.1:{port}"]
        return [*cmd, "gateway.app:app"], {"OPENCLAW_CONFIG_PATH": str(config)}
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)]
    if case == "serve_agents":
        cmd += ["--config", str(config)]
    return cmd, {}


def environment_for(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update({"HOME": str(home), "OPENCLAW_STATE_DIR": str(home / "state"), **extra})
    return env


def readyz_status(port: int) -> int | None:
    """The status of one ``GET /readyz`` on a new connection; ``None`` if nobody listens."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            head = b""
            while b"\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    return None
                head += data
    except OSError:
        return None
    return int(head.split(b" ", 2)[1])


def start_once(case: str, home: Path, config: Path, poll: float, limit: float) -> dict[str, Any]:
    """Start ``case``, wait for ready, stop it: the seconds to ready and to exit."""
    port = free_port()
    cmd, extra = command(case, port, config)
    log = home / "server.log"
    with open(log, "wb") as log_file:
        started = time.monotonic()
        process = subprocess.Popen(
            cmd, cwd=REPO, env=environment_for(home, extra), stdout=log_file, stderr=log_file
        )
        try:
            ready = None
            while time.monotonic() - started < limit and process.poll() is None:
                if readyz_status(port) == 200:
                    ready = time.monotonic() - started
                    break
                time.sleep(poll)
            stopping = time.monotonic()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
                stopped: float | None = time.monotonic() - stopping
            except subprocess.TimeoutExpired:
                stopped = None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if ready is None:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"{case}: not ready after {limit} s (exit {process.returncode}):\n{tail}"
        )
    return {"ready_s": ready, "stop_s": stopped}


def wall_seconds(code: str) -> float:
    started = time.monotonic()
    env = environment_for(Path(tempfile.gettempdir()), {})
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
    return time.monotonic() - started


def parse_importtime(stderr: str) -> list[tuple[str, int, int, str]]:
    """``(module, own µs, cumulative µs, imported by)`` per line of ``-X importtime`` output.

    A module's lines come after those of what it imports, indented one step less: its importer
    is the next line with less indentation."""
    rows: list[tuple[str, int, int, int]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, cumulative, field = line[len("import time:") :].split("|")
        depth = len(field) - len(field.lstrip())
        rows.append((field.strip(), int(own), int(cumulative), depth))
    out: list[tuple[str, int, int, str]] = []
    for index, (name, self_us, cumulative_us, depth) in enumerate(rows):
        parent = next((r[0] for r in rows[index + 1 :] if r[3] < depth), "")
        out.append((name, self_us, cumulative_us, parent))
    return out


def import_profile(module: str, runs: int) -> dict[str, Any]:
    """The import of ``module`` in a fresh interpreter: the median of ``runs`` by total."""
    env = environment_for(Path(tempfile.gettempdir()), {})
    profiles = []
    for _ in range(runs):
        cmd = [sys.executable, "-X", "importtime", "-c", f"import {module}"]
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=True)
        rows = parse_importtime(done.stderr)
        total = next(row[2] for row in rows if row[0] == module)
        profiles.append((total, rows))
    profiles.sort(key=lambda p: p[0])
    total, rows = profiles[len(profiles) // 2]
    packages: dict[str, int] = {}
    for name, self_us, _, _ in rows:
        top = name.split(".")[0]
        packages[top] = packages.get(top, 0) + self_us
    by_self = sorted(rows, key=lambda r: r[1], reverse=True)[:10]
    return {
        "module": module,
        "total_ms": total / 1000,
        "modules": len(rows),
        "top_modules": [
            {"module": n, "self_ms": s / 1000, "cumulative_ms": c / 1000, "imported_by": by}
            for n, s, c, by in by_self
        ],
        "top_packages": [
            {"package": name, "self_ms": us / 1000}
            for name, us in sorted(packages.items(), key=lambda kv: kv[1], reverse=True)[:10]
        ],
        "totals_ms": [p[0] / 1000 for p in profiles],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {case: [] for case in args.cases}
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        config = Path(tmp) / "agents.json"
        config.write_text(json.dumps(agents_config(), indent=2))
        homes = {case: Path(tmp) / case for case in args.cases}
        for home in homes.values():
            home.mkdir()
        print(f"startup: {', '.join(args.cases)}; {args.runs} runs each after a warm-up")
        for run_index in range(args.runs + 1):
            for case in args.cases:
                result = start_once(case, homes[case], config, args.poll_ms / 1000, args.limit)
                if run_index > 0:
                    samples[case].append(result)
    cases = {}
    for case, results in samples.items():
        ready = [r["ready_s"] for r in results]
        stops = [r["stop_s"] for r in results if r["stop_s"] is not None]
        cases[case] = {
            "ready_p50_s": percentile(ready, 50),
            "ready_max_s": max(ready),
            "stop_p50_s": percentile(stops, 50),
            "stop_max_s": max(stops) if stops else None,
            "ready_s": ready,
            "stop_s": [r["stop_s"] for r in results],
        }
        print(f"  {case}: ready p50 {cases[case]['ready_p50_s']:.3f} s, max {max(ready):.3f} s")
    interpreter = [wall_seconds("pass") for _ in range(args.import_runs)]
    app_import = [wall_seconds("import gateway.app") for _ in range(args.import_runs)]
    return {
        "cases": cases,
        "goal_s": GOAL_SECONDS,
        "python_start_s": percentile(interpreter, 50),
        "import_gateway_app_wall_s": percentile(app_import, 50),
        "imports": import_profile("gateway.app", args.import_runs),
        "config": {"runs": args.runs, "poll_ms": args.poll_ms, "cases": args.cases},
    }


def print_report(result: dict[str, Any]) -> None:
    rows = []
    for case, data in result["cases"].items():
        p50 = data["ready_p50_s"]
        rows.append(
            [
                case,
                p50,
                data["ready_max_s"],
                data["stop_p50_s"],
                data["stop_max_s"],
                p50 <= GOAL_SECONDS,
            ]
        )
    print()
    print(
        f"Process start -> first 200 on /readyz, seconds ({result['config']['runs']} runs each; "
        f"goal: p50 <= {GOAL_SECONDS:g} s)"
    )
    print(
        table(
            ["case", "ready p50", "ready max", "SIGTERM -> exit p50", "exit max", "goal met"], rows
        )
    )
    imports = result["imports"]
    print()
    print(
        f"python -c pass: {result['python_start_s']:.3f} s; python -c 'import gateway.app': "
        f"{result['import_gateway_app_wall_s']:.3f} s; -X importtime: gateway.app "
        f"{imports['total_ms']:.0f} ms cumulative, {imports['modules']} modules"
    )
    print(
        table(
            ["module (top 10 by own time)", "own ms", "cumulative ms", "imported by"],
            [
                [m["module"], m["self_ms"], m["cumulative_ms"], m["imported_by"]]
                for m in imports["top_modules"]
            ],
        )
    )
    print()
    print(
        table(
            ["package (own time of its modules)", "ms"],
            [[p["package"], p["self_ms"]] for p in imports["top_packages"]],
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__, target=False)
    parser.add_argument("--runs", type=int, default=5, help="counted starts per case")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--poll-ms", type=float, default=5.0)
    parser.add_argument("--limit", type=float, default=30.0, help="seconds to wait for ready")
    parser.add_argument("--import-runs", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args)
    result["environment"] = environment()
    path = write_json(args.out, "startup", result)
    print_report(result)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
