"""Shared plumbing: command-line options, starting the gateway and the fake upstream as separate
processes, reading their state, statistics, tables, JSON results and plots."""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from bench.client import Endpoint, H11Client

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DEFAULT_TOKEN = "bench-token"
DEFAULT_MODEL = "openclaw"


# Command line


def parser_for(description: str | None, *, target: bool = True) -> argparse.ArgumentParser:
    """A parser with the options every benchmark takes (``target``: also those for measuring
    a gateway that is already running)."""
    parser = argparse.ArgumentParser(
        description=(description or "").split("\n\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    if target:
        _target_options(parser)
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for JSON and PNG")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


def _target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        help="an OpenAI-compatible gateway to measure instead of starting one "
        "(http://127.0.0.1:PORT); its model (--model) must be routed to the fake upstream "
        "this benchmark starts on --upstream-port",
    )
    parser.add_argument("--token", default=None, help=f"bearer token (default {DEFAULT_TOKEN})")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name sent by clients")
    parser.add_argument(
        "--upstream-port", type=int, default=0, help="port of the fake upstream (0: any)"
    )
    parser.add_argument(
        "--gateway-pid", type=int, default=None, help="with --target: its PID (RSS, CPU)"
    )


# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's (and its future children's) open-file limit; returns the new one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(wanted, soft)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _open_log(path: Path | None) -> Any:
    return open(path, "wb") if path else subprocess.DEVNULL


@asynccontextmanager
async def spawned(
    cmd: Sequence[str],
    *,
    log: Path | None = None,
    pipe_stdout: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
) -> AsyncIterator[trio.Process]:
    """Run ``cmd`` for the block; on the way out SIGTERM it, then SIGKILL after 10 s."""
    log_file = _open_log(log)
    try:
        process = await trio.lowlevel.open_process(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else log_file,
            stderr=log_file,
            cwd=cwd,
            env=_env(env),
        )
        try:
            yield process
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with trio.move_on_after(10):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finally:
        if log_file is not subprocess.DEVNULL:
            log_file.close()


class Upstream:
    """A running ``bench._upstream`` process and, with ``--records``, what it reported."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.base_url = ""
        self.received: dict[str, float] = {}
        self.closed: dict[str, tuple[float, str]] = {}
        self.open_connections = 0
        self._changed = trio.Event()

    async def read(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        assert self.process.stdout is not None
        buffer = b""
        started = False
        async for data in self.process.stdout:
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                event = json.loads(line)
                if "rx" in event:
                    self.received[event["rx"][0]] = event["rx"][1]
                elif "cl" in event:
                    bench_id, at, cause = event["cl"]
                    self.closed[bench_id] = (at, cause)
                elif "open" in event:
                    self.open_connections = event["open"]
                elif "base_url" in event:
                    self.base_url = event["base_url"]
                    if not started:
                        started = True
                        task_status.started()
            self._changed.set()
            self._changed = trio.Event()

    async def wait_until(self, condition: Callable[[], bool], seconds: float) -> bool:
        """Wait (at most ``seconds``) until ``condition()`` holds after some report."""
        with trio.move_on_after(seconds):
            while not condition():
                await self._changed.wait()
            return True
        return False


@dataclass
class Stack:
    """What a benchmark talks to: a gateway (started here or ``--target``) and a fake upstream."""

    gateway: Endpoint
    token: str | None
    model: str
    local: bool  # we started the gateway
    gateway_pid: int | None
    introspection: bool  # the gateway is ``bench._server`` (``/_bench/*``)
    upstream: Upstream | None
    state_dir: Path | None = None
    log_path: Path | None = None
    _stats_client: H11Client | None = field(default=None, repr=False)

    async def _get(self, path: str) -> Any:
        """GET a ``/_bench`` document on a kept-alive connection (one retry on a new one: the
        server closes idle connections)."""
        for attempt in (1, 2):
            if self._stats_client is None:
                self._stats_client = H11Client(self.gateway)
            try:
                return await self._stats_client.get_json(path)
            except (OSError, ConnectionError):
                await self._stats_client.aclose()
                self._stats_client = None
                if attempt == 2:
                    raise
        return None

    async def stats(self) -> dict[str, Any] | None:
        """The gateway's ``/_bench/stats`` (only when it is ``bench._server``)."""
        if not self.introspection:
            return None
        return await self._get("/_bench/stats")  # type: ignore[no-any-return]

    async def lane_events(self) -> dict[str, list[float | None]]:
        """Lane enter/admit/exit times per bench id since the last call (``bench._server``)."""
        if not self.introspection:
            return {}
        return await self._get("/_bench/lanes")  # type: ignore[no-any-return]

    def log_errors(self) -> list[str]:
        """Lines of the gateway's log that report errors (tracebacks, ERROR)."""
        if self.log_path is None or not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if " ERROR " in line or line.startswith("Traceback")]


def gateway_config(
    token: str,
    upstream_url: str | None,
    *,
    max_concurrent: int,
    extra_agents: Sequence[dict[str, Any]] = (),
    default_model: str | None = None,
    responses: bool = False,
) -> dict[str, Any]:
    """A gateway configuration: chat completions on (and ``/v1/responses`` if ``responses``),
    token auth, the fake upstream as provider ``fake`` (model ``fake/fake``) with generous
    timeouts, ``maxConcurrent`` as given."""
    providers: dict[str, Any] = {}
    if upstream_url:
        providers["fake"] = {
            "baseUrl": upstream_url,
            "api": "openai-completions",
            "firstByteTimeoutSeconds": 3600,
            "idleTimeoutSeconds": 3600,
            "models": [{"id": "fake"}],
        }
    defaults: dict[str, Any] = {"maxConcurrent": max_concurrent, "timeoutSeconds": 3600}
    model = default_model or ("fake/fake" if upstream_url else None)
    if model:
        defaults["model"] = model
    agents: dict[str, Any] = {"defaults": defaults}
    if extra_agents:
        agents["list"] = [{"id": "main", "default": True}, *extra_agents]
    endpoints: dict[str, Any] = {"chatCompletions": {"enabled": True}}
    if responses:
        endpoints["responses"] = {"enabled": True}
    return {
        "gateway": {
            "auth": {"mode": "token", "token": token},
            "http": {"endpoints": endpoints},
        },
        "models": {"providers": providers},
        "agents": agents,
    }


async def wait_healthy(endpoint: Endpoint, process: trio.Process | None, seconds: float) -> None:
    client = H11Client(endpoint)
    deadline = trio.current_time() + seconds
    try:
        while True:
            if process is not None and process.returncode is not None:
                raise RuntimeError(f"the server exited with status {process.returncode}")
            try:
                answer = await client.request("GET", "/health", {})
                if answer.status == 200:
                    return
            except OSError:
                await client.aclose()
            if trio.current_time() > deadline:
                raise RuntimeError(f"no healthy server at {endpoint} after {seconds} s")
            await trio.sleep(0.05)
    finally:
        await client.aclose()


@asynccontextmanager
async def open_upstream(
    *, records: bool = False, port: int = 0, log: Path | None = None
) -> AsyncIterator[Upstream]:
    cmd = [sys.executable, "-m", "bench._upstream", "--port", str(port)]
    if records:
        cmd.append("--records")
    async with spawned(cmd, pipe_stdout=True, log=log) as process, trio.open_nursery() as nursery:
        upstream = Upstream(process)
        with trio.fail_after(20):
            await nursery.start(upstream.read)
        try:
            yield upstream
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_stack(
    args: argparse.Namespace,
    *,
    name: str,
    upstream: bool = True,
    records: bool = False,
    introspection: bool = False,
    max_concurrent: int = 256,
    extra_agents: Sequence[dict[str, Any]] = (),
    default_model: str | None = None,
    responses: bool = False,
) -> AsyncIterator[Stack]:
    """Start what the benchmark needs: the fake upstream (if ``upstream``) and, unless
    ``--target`` is given, a gateway as a separate process with a generated config in a
    temporary state directory: ``bench._server`` if ``introspection``, else ``gateway serve``;
    ``/v1/responses`` served too if ``responses``.
    """
    token = args.token if args.token is not None else (None if args.target else DEFAULT_TOKEN)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        tmp_path = Path(tmp)
        async with _maybe_upstream(upstream, records, args.upstream_port, tmp_path) as up:
            if args.target:
                endpoint = Endpoint.parse(args.target)
                yield Stack(endpoint, token, args.model, False, args.gateway_pid, False, up)
                return
            state = tmp_path / "state"
            state.mkdir()
            config = gateway_config(
                token or DEFAULT_TOKEN,
                up.base_url if up else None,
                max_concurrent=max_concurrent,
                extra_agents=extra_agents,
                default_model=default_model,
                responses=responses,
            )
            config_path = tmp_path / "openclaw.json"
            config_path.write_text(json.dumps(config, indent=2))
            port = free_port()
            if introspection:
                cmd = [sys.executable, "-m", "bench._server"]
                if getattr(args, "profile", None):
                    cmd += ["--profile", str(args.profile)]
                if getattr(args, "tracemalloc", False):
                    cmd.append("--tracemalloc")
            else:
                cmd = [sys.executable, "-m", "gateway.cli", "serve"]
            cmd += ["--config", str(config_path), "--port", str(port)]
            log = args.out / "logs" / f"{name}-gateway.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            env = {"OPENCLAW_STATE_DIR": str(state), "HOME": str(tmp_path)}
            async with spawned(cmd, log=log, env=env) as process:
                endpoint = Endpoint("127.0.0.1", port, "")
                try:
                    await wait_healthy(endpoint, process, 30)
                except RuntimeError:
                    print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                    raise
                stack = Stack(
                    endpoint,
                    token or DEFAULT_TOKEN,
                    args.model,
                    True,
                    process.pid,
                    introspection,
                    up,
                    state,
                    log,
                )
                try:
                    yield stack
                finally:
                    if stack._stats_client is not None:
                        with trio.CancelScope(shield=True):
                            await stack._stats_client.aclose()


@asynccontextmanager
async def _maybe_upstream(
    wanted: bool, records: bool, port: int, tmp: Path
) -> AsyncIterator[Upstream | None]:
    if not wanted:
        yield None
        return
    async with open_upstream(records=records, port=port, log=tmp / "upstream.log") as up:
        yield up


# /proc


def proc_status_kb(pid: int, field_name: str) -> int | None:
    """A ``/proc/<pid>/status`` field in kB (``VmRSS``, ``VmHWM``)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``hypercorn`` runs its worker in a child process)."""
    out, pending = [], [pid]
    while pending:
        current = pending.pop()
        out.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return out


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) or 0.0 for p in process_tree(pid))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time consumed so far by ``pid`` (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class CpuMonitor:
    """CPU used between ``start()`` and ``stop()``: by the whole machine, by our processes
    (this one and the ``pids`` given, with their children), and so by everything else (other
    users of the machine disturb the measurement: compare ratios measured in one run)."""

    def __init__(self) -> None:
        self._t0 = 0.0
        self._machine0 = 0.0
        self._ours0 = 0.0
        self._first0 = 0.0
        self._first: int | None = None
        self._pids: list[int] = []

    @staticmethod
    def _machine_busy() -> float:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _ours(self) -> float:
        mine = process_tree(os.getpid())  # the gateway and fake upstream we started included
        others = [pid for pid in self._pids if pid not in mine]
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)  # children already waited for
        total = sum(cpu_seconds(pid) or 0.0 for pid in mine) + sum(map(tree_cpu_seconds, others))
        return total + ended.ru_utime + ended.ru_stime

    def start(self, *pids: int | None) -> None:
        """``pids``: our other processes; the first is reported alone too (the gateway)."""
        self._first = pids[0] if pids else None
        self._pids = [pid for pid in pids if pid]
        self._t0 = time.monotonic()
        self._machine0 = self._machine_busy()
        self._ours0 = self._ours()
        self._first0 = tree_cpu_seconds(self._first) if self._first else 0.0

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        machine = (self._machine_busy() - self._machine0) / wall
        ours = (self._ours() - self._ours0) / wall
        first = tree_cpu_seconds(self._first) - self._first0 if self._first else 0.0
        return {
            "wall_s": wall,
            "gateway_cpu_pct": 100 * first / wall,
            "machine_cpu_pct": 100 * machine,
            "bench_cpu_pct": 100 * ours,
            "other_cpu_pct": max(0.0, 100 * (machine - ours)),
        }


# Statistics and output


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), linear between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers], *[[fmt(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def environment(**extra: Any) -> dict[str, Any]:
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        **extra,
    }


def write_json(out: Path, name: str, document: dict[str, Any]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return path


def pyplot(args: argparse.Namespace) -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or ``None`` (``--no-plots`` or not installed:
    ``pip install -e '.[bench]'``)."""
    if args.no_plots:
        return None
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install -e '.[bench]')")
        return None
    return plt
