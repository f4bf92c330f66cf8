"""The upstream HTTP client: CPU and latency per request of httpx, httpcore and the gateway's
own client, each through the real provider path.

The fake upstream runs as a separate process (``python -m gateway.testing.fake_upstream``, zero
delay, ``--tokens`` tokens per streamed answer). In this process,
``OpenAICompletionsProvider.stream(ModelRequest(...), emit)`` runs on each client in turn (the
provider code is the same, only its ``http`` differs): ``httpx`` (the gateway's client before,
``bench._upstream_reference``), ``httpcore`` used directly (the same), ``gateway``
(``gateway.providers.upstream_http.UpstreamHttp`` on ``gateway.providers.http11``: requests
written as bytes, responses parsed by llhttp through ``httptools``), and ``floor``: no
HTTP, one real answer's body chunks replayed from memory through the same body code, i.e. the
provider's own work; a client's own cost is its figure minus the floor's.

Per client and round: ``--requests`` requests one after the other, then ``--requests`` spread
over ``--concurrency`` tasks. CPU per request is ``time.process_time()`` over the block divided
by its requests (this process only: the fake upstream's CPU is not counted; "kernel" is the
system part of it, mostly loopback TCP); latency is each
``stream()`` call's wall time. Clients take turns within each round (the order rotates), so
machine noise falls on all of them; the figures are totals over the rounds. Every answer is
checked (all tokens, a finish) and keep-alive is on, as in the gateway.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from bench._upstream_reference import HttpcoreUpstream, HttpxUpstream, ReplayUpstream
from bench.common import (
    RESULTS,
    CpuMonitor,
    environment,
    percentile,
    pyplot,
    spawned,
    table,
    write_json,
)
from gateway.providers.base import ModelRequest
from gateway.providers.events import Finish, ProviderEvent, TextDelta
from gateway.providers.openai_completions import OpenAICompletionsProvider, build_body
from gateway.providers.upstream_http import UpstreamHttp
from gateway.settings import ProviderSettings

CLIENTS: dict[str, Callable[[ProviderSettings], Any]] = {
    "httpx": HttpxUpstream,
    "httpcore": HttpcoreUpstream,
    "gateway": UpstreamHttp,
}
FLOOR = "floor"
MODES = ("sequential", "concurrent")
REQUEST = ModelRequest(model="fake", messages=[{"role": "user", "content": "hi"}])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n", 1)[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--tokens", type=int, default=8, help="tokens per streamed answer")
    parser.add_argument("--requests", type=int, default=2000, help="requests per block")
    parser.add_argument("--concurrency", type=int, default=16, help="tasks of the second block")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all clients")
    parser.add_argument("--warmup", type=int, default=50, help="requests before each block")
    choices = [*CLIENTS, FLOOR]
    parser.add_argument("--clients", nargs="+", choices=choices, default=choices)
    parser.add_argument("--quick", action="store_true", help="a few seconds: 150 requests, 1 round")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for JSON and PNG")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plot")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.warmup = 150, 1, 10
    return args


@asynccontextmanager
async def fake_upstream(tokens: int, log: Path) -> AsyncIterator[str]:
    """The fake upstream as a process for the block; yields its base URL."""
    cmd = [sys.executable, "-m", "gateway.testing.fake_upstream", "--port", "0"]
    cmd += ["--tokens", str(tokens), "--delay-ms", "0"]
    async with spawned(cmd, pipe_stdout=True, log=log) as process:
        assert process.stdout is not None
        line = b""
        with trio.fail_after(20):
            while not line.endswith(b"\n"):
                data = await process.stdout.receive_some(4096)
                if not data:
                    raise RuntimeError(f"the fake upstream exited, see {log}")
                line += data
        yield line.decode().strip()


class Checker:
    """An ``emit`` that counts what a whole answer must hold."""

    def __init__(self) -> None:
        self.texts = 0
        self.finishes = 0

    async def __call__(self, event: ProviderEvent) -> None:
        if isinstance(event, TextDelta):
            self.texts += 1
        elif isinstance(event, Finish):
            self.finishes += 1


async def block(
    provider: OpenAICompletionsProvider, requests: int, concurrency: int, tokens: int
) -> tuple[float, float, list[float]]:
    """Run ``requests`` requests over ``concurrency`` tasks; returns the CPU seconds used (all,
    and in the kernel) and each request's latency."""
    checker = Checker()
    latencies: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await provider.stream(REQUEST, checker)
            latencies.append(time.perf_counter() - started)

    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    gc.collect()
    cpu, kernel = time.process_time(), os.times().system
    async with trio.open_nursery() as nursery:
        for share in shares:
            nursery.start_soon(worker, share)
    cpu, kernel = time.process_time() - cpu, os.times().system - kernel
    if (checker.texts, checker.finishes) != (requests * tokens, requests):
        raise RuntimeError(f"incomplete answers: {checker.texts} tokens, {checker.finishes} ends")
    return cpu, kernel, latencies


async def record_answer(settings: ProviderSettings) -> ReplayUpstream:
    """A ``ReplayUpstream`` of one real answer, its chunks as the gateway's client received
    them."""
    http = UpstreamHttp(settings)
    url = settings.base_url + "/chat/completions"
    body = json.dumps(build_body(REQUEST)).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    chunks: list[bytes] = []
    try:
        async with http.open_stream(url, body=body, headers=headers) as upstream:
            while (chunk := await upstream.receive_some()) is not None:
                chunks.append(chunk)
            content_type = upstream.content_type
    finally:
        await http.aclose()
    return ReplayUpstream(settings, content_type, chunks)


async def measure(args: argparse.Namespace, base_url: str) -> dict[str, dict[str, Any]]:
    settings = ProviderSettings(id="fake", api="openai-completions", base_url=base_url)
    replay = await record_answer(settings)
    factories = {**CLIENTS, FLOOR: lambda _: replay}
    totals = {
        name: {
            mode: {"cpu_s": 0.0, "kernel_s": 0.0, "requests": 0, "latencies": []} for mode in MODES
        }
        for name in args.clients
    }
    for round_index in range(args.rounds):
        shift = round_index % len(args.clients)
        for name in args.clients[shift:] + args.clients[:shift]:
            provider = OpenAICompletionsProvider(settings, http=factories[name](settings))
            try:
                for mode, concurrency in zip(MODES, (1, args.concurrency), strict=True):
                    await block(provider, args.warmup, concurrency, args.tokens)
                    cpu, kernel, latencies = await block(
                        provider, args.requests, concurrency, args.tokens
                    )
                    total = totals[name][mode]
                    total["cpu_s"] += cpu
                    total["kernel_s"] += kernel
                    total["requests"] += args.requests
                    total["latencies"] += latencies
                    print(
                        f"round {round_index + 1} {name:8} {mode:10} "
                        f"{1000 * cpu / args.requests:.3f} ms CPU/request",
                        flush=True,
                    )
            finally:
                await provider.aclose()
    return totals


def summarize(totals: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name, modes in totals.items():
        results[name] = {}
        for mode, total in modes.items():
            ms = [1000 * x for x in total["latencies"]]
            results[name][mode] = {
                "requests": total["requests"],
                "cpu_ms_per_request": 1000 * total["cpu_s"] / total["requests"],
                "kernel_ms_per_request": 1000 * total["kernel_s"] / total["requests"],
                "latency_ms_p50": percentile(ms, 50),
                "latency_ms_p99": percentile(ms, 99),
            }
    return results


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    def cpu(name: str, mode: str) -> float | None:
        return results[name][mode]["cpu_ms_per_request"] if name in results else None

    rows = []
    for name, modes in results.items():
        seq, conc = modes["sequential"], modes["concurrent"]
        floor, base = cpu(FLOOR, "sequential"), cpu("httpx", "sequential")
        own = None
        if floor is not None and name != FLOOR:
            own = f"{seq['cpu_ms_per_request'] - floor:.3f}"
        ratio = None
        if base is not None and floor is not None and name != FLOOR:
            ratio = f"{100 * (seq['cpu_ms_per_request'] - floor) / (base - floor):.0f} %"
        rows.append(
            [
                name,
                f"{seq['cpu_ms_per_request']:.3f}",
                f"{seq['kernel_ms_per_request']:.3f}",
                f"{conc['cpu_ms_per_request']:.3f}",
                own,
                ratio,
                f"{seq['latency_ms_p50']:.3f}",
                f"{conc['latency_ms_p50']:.3f}",
                f"{conc['latency_ms_p99']:.3f}",
            ]
        )
    c = args.concurrency
    headers = [
        "client",
        "CPU ms/req, sequential",
        "of which kernel",
        f"CPU ms/req, c={c}",
        "client's own CPU ms/req (minus floor)",
        "own CPU vs httpx",
        "p50 ms, sequential",
        f"p50 ms, c={c}",
        f"p99 ms, c={c}",
    ]
    return table(headers, rows)


def plot(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    plt = pyplot(args)
    if plt is None:
        return
    names = list(results)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.38
    for offset, mode in ((-width / 2, "sequential"), (width / 2, "concurrent")):
        values = [results[n][mode]["cpu_ms_per_request"] for n in names]
        label = mode if mode == "sequential" else f"c={args.concurrency}"
        ax.bar([i + offset for i in range(len(names))], values, width, label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("client CPU ms / request")
    ax.set_title(f"Upstream client, {args.tokens}-token streamed request")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "upstream_client.png", dpi=110)
    plt.close(fig)


async def run(args: argparse.Namespace) -> None:
    log = args.out / "logs" / "upstream_client-upstream.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    monitor = CpuMonitor()
    async with fake_upstream(args.tokens, log) as base_url:
        monitor.start()
        totals = await measure(args, base_url)
        cpu = monitor.stop()
    results = summarize(totals)
    text = report(results, args)
    print()
    print(text)
    print(
        f"\nCPU during the run: this benchmark and its fake upstream {cpu['bench_cpu_pct']:.0f} %, "
        f"other processes {cpu['other_cpu_pct']:.0f} % (of one core; {os.cpu_count()} cores)"
    )
    document = {
        "environment": environment(),
        "cpu": cpu,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
        "table": text,
    }
    path = write_json(args.out, "upstream_client", document)
    plot(results, args)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    trio.run(run, parse_args(argv))


if __name__ == "__main__":
    main()
