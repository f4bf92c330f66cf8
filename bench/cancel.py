"""Client disconnects: how fast the gateway lets go, and what it leaves behind.

Per phase, ``--concurrency`` clients are kept in flight (a new one starts as one finishes, the
first ones staggered): each opens a chat completion and closes its connection (FIN; RST with
``--close rst``, either at random with ``random``) at a random moment of its phase:

- ``queued``: waiting for a run slot, every ``maxConcurrent`` slot held by a hanging run;
- ``lane``: waiting for the session lane, behind a hanging run on the same session key;
- ``before_first_token``: the upstream has the request and says nothing (streaming);
- ``mid_stream``: after 1-10 streamed tokens (the upstream sends one every 50 ms);
- ``non_streaming``: a non-streaming request whose upstream stream is under way.

The moment: uniformly within ``--spread-ms`` after the phase is reached (upstream received the
request / the k-th token arrived / 20 ms after sending, for the queue phases).

Latency, from the client's close (``time.monotonic()`` taken just before ``close()``):

- phases that reach the upstream: to the fake upstream (a separate process) seeing the gateway's
  upstream connection close (its ``closed_at``);
- ``queued`` / ``lane`` (never reach the upstream): to the run leaving the queue, i.e. its lane
  context exiting once its queue tickets are released (``bench._server``'s lane probe). A sample
  counts only if the probe saw the run queue before the close and never admitted;
- for every phase also close -> run end (lane released), from the same probe.

Also measured: the same one client at a time (``--isolated``), and the measurement floor (the
same aborts sent straight to the fake upstream, no gateway in between).

After everything (blockers and holders closed too): runs still active or queued, lanes held or
waited for, lane tickets, upstream connections still open, and trio tasks / file descriptors /
RSS against the idle baseline: leaks, which must be 0.

With ``--target`` the gateway is someone else's: its ``--model`` must be routed to the fake
upstream started on ``--upstream-port``; without the probe the queue phases have no latency and
only the upstream connections are checked for leaks.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from bench.client import (
    CONTENT,
    Endpoint,
    chat_body,
    close_now,
    headers_for,
    request_bytes,
    tagged_text,
)
from bench.common import (
    CpuMonitor,
    Stack,
    environment,
    fmt,
    open_stack,
    parser_for,
    proc_status_kb,
    pyplot,
    raise_fd_limit,
    summary,
    table,
    write_json,
)

UPSTREAM_PHASES = ("before_first_token", "mid_stream", "non_streaming")
QUEUE_PHASES = ("queued", "lane")
PHASES = (*QUEUE_PHASES, *UPSTREAM_PHASES)
HANG = {"first_token_delay": 3600, "tokens": 1}
# 100 tokens, one every 50 ms (20 tokens/s, a typical model). The fake renders a whole script
# before answering: a much longer one would blind it to closes while it renders.
SLOW = {"tokens": 100, "token_delay": 0.05}
# The goal: close -> released, p99, with --concurrency (64) clients in flight, in every phase.
GOAL_P99_MS = 5.0
SETTLE_S = 5.0
QUEUE_SETTLE_S = 0.02


@dataclass
class Sample:
    phase: str
    bench_id: str
    close_at: float | None = None
    error: str | None = None


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.rng = random.Random(args.seed)
        self.samples: list[Sample] = []
        self.lanes: dict[str, list[float | None]] = {}
        self.cpu: dict[tuple[str, int], dict[str, float]] = {}
        self.counter = 0
        self.aborts = 0
        self.notes: list[str] = []

    @property
    def up(self) -> Any:
        assert self.stack.upstream is not None
        return self.stack.upstream

    def new_id(self, phase: str) -> str:
        self.counter += 1
        return f"{phase[:3]}-{self.counter:06d}"

    async def open_request(
        self, bench_id: str, knobs: dict[str, Any], *, stream: bool, session_key: str | None = None
    ) -> trio.SocketStream:
        gateway = self.stack.gateway
        extra = {"x-bench-id": bench_id}
        if session_key is not None:
            extra["x-openclaw-session-key"] = session_key
        body = chat_body(self.stack.model, tagged_text(bench_id, knobs), stream=stream)
        path = gateway.path("/v1/chat/completions")
        data = request_bytes(gateway, "POST", path, headers_for(self.stack.token, extra), body)
        sock = await trio.open_tcp_stream(gateway.host, gateway.port)
        await sock.send_all(data)
        return sock

    async def close(self, sock: trio.SocketStream) -> float:
        mode = self.args.close
        reset = mode == "rst" or (mode == "random" and self.rng.random() < 0.5)
        self.aborts += 1
        return await close_now(sock, reset=reset)

    # One client

    async def client(self, sample: Sample, spread: float, keys: list[str] | None) -> None:
        """Open a request for ``sample.phase``, wait for the moment to close, close."""
        phase = sample.phase
        up = self.up
        key = self.rng.choice(keys) if keys else None
        knobs = SLOW if phase in ("mid_stream", "non_streaming") else HANG
        stream = phase != "non_streaming"
        try:
            with trio.fail_after(60):
                sock = await self.open_request(
                    sample.bench_id, knobs, stream=stream, session_key=key
                )
                try:
                    if phase == "mid_stream":
                        wanted = self.rng.randint(1, 10)
                        seen = bytearray()
                        while len(CONTENT.findall(seen)) < wanted:
                            data = await sock.receive_some(65536)
                            if not data:
                                raise ConnectionError("the gateway closed the stream")
                            seen += data
                        spread = min(spread, 0.05)  # the tokens already spread the closes
                    elif phase in QUEUE_PHASES:
                        await trio.sleep(QUEUE_SETTLE_S)
                    elif not await up.wait_until(lambda: sample.bench_id in up.received, 30):
                        raise TimeoutError("the upstream never got the request")
                    await trio.sleep(self.rng.uniform(0, spread))
                finally:
                    sample.close_at = await self.close(sock)
        except (OSError, ConnectionError, TimeoutError, trio.TooSlowError) as exc:
            sample.error = f"{type(exc).__name__}: {exc}"
        self.samples.append(sample)

    # A phase: ``count`` clients, ``width`` in flight

    async def phase(self, phase: str, count: int, width: int, spread: float) -> None:
        t0 = time.monotonic()
        monitor = CpuMonitor()
        monitor.start(self.stack.gateway_pid, self.up.process.pid)
        async with trio.open_nursery() as nursery:
            holders: list[trio.SocketStream] = []
            keys: list[str] | None = None
            if phase == "queued":
                holders = await self.hold(self.args.max_concurrent, None)
            elif phase == "lane":
                keys = [f"bench-lane-{self.counter}-{i}" for i in range(width)]
                holders = await self.hold(width, keys)
            try:
                wave = [Sample(phase, self.new_id(phase)) for _ in range(count)]
                await self.pool(nursery, wave, width, spread, keys)
            finally:
                with trio.CancelScope(shield=True):
                    for sock in holders:
                        await self.close(sock)
        await self.collect(wave)
        self.cpu[(phase, width)] = cpu = monitor.stop()
        elapsed = time.monotonic() - t0
        print(
            f"  {phase}: {count} aborts, {width} in flight, {elapsed:.1f} s "
            f"({count / elapsed:.0f}/s); CPU: gateway {cpu['gateway_cpu_pct']:.0f} %, "
            f"gateway+fake+bench {cpu['bench_cpu_pct']:.0f} %, others {cpu['other_cpu_pct']:.0f} %"
        )

    async def pool(
        self,
        nursery: trio.Nursery,
        wave: list[Sample],
        width: int,
        spread: float,
        keys: list[str] | None,
    ) -> None:
        """Run the clients of ``wave``, ``width`` at once; the first ones staggered over
        ``spread`` so that arrivals and closes interleave from the start."""
        slots = trio.Semaphore(width)

        async def one(sample: Sample) -> None:
            try:
                await self.client(sample, spread, keys)
            finally:
                slots.release()

        async with trio.open_nursery() as clients:
            for index, sample in enumerate(wave):
                await slots.acquire()
                clients.start_soon(one, sample)
                if index < width:
                    await trio.sleep(spread / width)

    async def collect(self, wave: list[Sample]) -> None:
        """Wait (bounded) for the upstream closes and lane exits of ``wave``."""
        up = self.up
        reach = [s.bench_id for s in wave if s.phase in UPSTREAM_PHASES and s.error is None]
        await up.wait_until(lambda: all(i in up.closed for i in reach), SETTLE_S)
        if not self.stack.introspection:
            return
        ids = {s.bench_id for s in wave}
        with trio.move_on_after(SETTLE_S):
            while True:
                self.lanes.update(await self.stack.lane_events())
                if ids <= self.lanes.keys():
                    break
                await trio.sleep(0.02)

    async def hold(self, count: int, keys: list[str] | None) -> list[trio.SocketStream]:
        """Hanging runs that fill every slot (``keys`` None) or hold the session lanes."""
        up = self.up
        ids = [self.new_id("holder") for _ in range(count)]
        socks = []
        for index, bench_id in enumerate(ids):
            key = keys[index] if keys else None
            socks.append(await self.open_request(bench_id, HANG, stream=True, session_key=key))
        if not await up.wait_until(lambda: all(i in up.received for i in ids), 30):
            self.notes.append("the hanging runs did not all reach the upstream")
        return socks

    async def floor(self, count: int, width: int, spread: float) -> list[float]:
        """The measurement's own latency: aborts sent straight to the fake upstream (client
        close -> the fake's ``closed_at``), ``width`` in flight."""
        up = self.up
        upstream = Endpoint.parse(up.base_url)
        closes: dict[str, float] = {}
        slots = trio.Semaphore(width)

        async def client(bench_id: str) -> None:
            try:
                body = chat_body("fake", tagged_text(bench_id, HANG), stream=True)
                path = upstream.path("/chat/completions")
                data = request_bytes(upstream, "POST", path, headers_for(None), body)
                with trio.move_on_after(30):
                    sock = await trio.open_tcp_stream(upstream.host, upstream.port)
                    await sock.send_all(data)
                    await up.wait_until(lambda: bench_id in up.received, 20)
                    await trio.sleep(self.rng.uniform(0, spread))
                    closes[bench_id] = await close_now(sock)
            finally:
                slots.release()

        async with trio.open_nursery() as nursery:
            for index in range(count):
                await slots.acquire()
                nursery.start_soon(client, f"floor-{index}")
                if index < width:
                    await trio.sleep(spread / width)
        await up.wait_until(lambda: all(i in up.closed for i in closes), SETTLE_S)
        return [(up.closed[i][0] - at) * 1000 for i, at in closes.items() if i in up.closed]

    # The run

    async def run(self) -> dict[str, Any]:
        args = self.args
        phases = [p for p in args.phases if p in PHASES]
        spread = args.spread_ms / 1000
        # Warm-up (not counted; every phase, so the stores the stateful ones open lazily, with
        # their file descriptors, are open), then the baseline of the idle gateway.
        for phase in phases:
            await self.phase(phase, 8, 4, 0.05)
        self.samples.clear()
        self.lanes.clear()
        await trio.sleep(0.3)
        baseline = await self.stack.stats()
        pid = self.stack.gateway_pid
        rss_before = proc_status_kb(pid, "VmRSS") if pid else None
        started = time.monotonic()
        per_phase = max(1, args.aborts // max(1, len(phases)))
        for phase in phases:
            await self.phase(phase, per_phase, args.concurrency, spread)
        elapsed = time.monotonic() - started
        concurrent, self.samples = self.samples, []
        if args.isolated:
            print("  one client at a time:")
            for phase in phases:
                await self.phase(phase, args.isolated, 1, min(spread, 0.05))
        isolated, self.samples = self.samples, []
        leaks = await self.leaks(baseline, rss_before)
        print("  measurement floor (no gateway):")
        floor = await self.floor(max(200, args.concurrency * 4), args.concurrency, spread)
        return {
            "phases": self.report(phases, concurrent, args.concurrency),
            "isolated": self.report(phases, isolated, 1),
            "floor_ms": summary(floor),
            "floor_samples_ms": [round(v, 4) for v in floor],
            "leaks": leaks,
            "elapsed_s": elapsed,
            "notes": self.notes,
        }

    async def leaks(
        self, baseline: dict[str, Any] | None, rss_before: int | None
    ) -> dict[str, Any]:
        up = self.up
        settled_after = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < SETTLE_S:
            stats = await self.stack.stats()
            busy = bool(stats and (stats.get("active_runs") or stats.get("queued_runs")))
            if not busy and up.open_connections == 0:
                settled_after = time.monotonic() - t0
                break
            await trio.sleep(0.05)
        await trio.sleep(0.2)
        stats = await self.stack.stats()
        out: dict[str, Any] = {
            "aborts": self.aborts,
            "settled_after_s": settled_after,
            "upstream_connections_open": up.open_connections,
        }
        if stats is not None:
            lanes = stats.get("lanes") or {}
            out["active_runs"] = stats.get("active_runs")
            out["queued_runs"] = stats.get("queued_runs")
            out["lanes_held"] = lanes.get("sessions_held", 0) + lanes.get("slots_held", 0)
            out["lanes_waiting"] = lanes.get("sessions_waiting", 0) + lanes.get("slots_waiting", 0)
            out["lane_tickets"] = stats.get("lane_tickets")
            if baseline:
                out["tasks_delta"] = stats["tasks"] - baseline["tasks"]
                out["fds_delta"] = stats["fds"] - baseline["fds"]
        pid = self.stack.gateway_pid
        if rss_before is not None and pid:
            out["rss_before_mb"] = rss_before / 1024
            out["rss_after_mb"] = (proc_status_kb(pid, "VmRSS") or 0) / 1024
        errors = self.stack.log_errors()
        out["gateway_log_errors"] = len(errors)
        out["gateway_log_error_examples"] = sorted(set(errors))[:5]
        return out

    # Results

    def report(self, phases: list[str], samples: list[Sample], width: int) -> dict[str, Any]:
        up = self.up
        result: dict[str, Any] = {}
        for phase in phases:
            mine = [s for s in samples if s.phase == phase]
            if not mine:
                continue
            queue_phase = phase in QUEUE_PHASES
            primary: list[float] = []
            run_end: list[float] = []
            causes: dict[str, int] = {}
            unseen = not_queued = admitted = reached = 0
            for sample in mine:
                if sample.error is not None or sample.close_at is None:
                    continue
                lane = self.lanes.get(sample.bench_id)
                exited = lane[2] if lane else None
                if exited is not None:
                    run_end.append((exited - sample.close_at) * 1000)
                if queue_phase:
                    reached += sample.bench_id in up.received
                    if lane is None or exited is None:
                        unseen += 1
                    elif lane[0] is None or lane[0] > sample.close_at:
                        not_queued += 1  # closed before the run asked for a lane
                    elif lane[1] is not None:
                        admitted += 1  # got its slot or lane before the close: not queued
                    else:
                        primary.append((exited - sample.close_at) * 1000)
                elif (closed := up.closed.get(sample.bench_id)) is not None:
                    primary.append((closed[0] - sample.close_at) * 1000)
                    causes[closed[1]] = causes.get(closed[1], 0) + 1
                else:
                    unseen += 1
            errors = [s.error for s in mine if s.error]
            result[phase] = {
                "measured_as": "close -> run left the queue"
                if queue_phase
                else "close -> upstream connection closed",
                "aborts": len(mine),
                "client_errors": len(errors),
                "error_examples": sorted({e for e in errors if e})[:3],
                "not_observed": unseen,
                "closed_before_queued": not_queued,
                "admitted_before_close": admitted,
                "reached_upstream": reached,
                "upstream_close_causes": causes,
                "cpu": self.cpu.get((phase, width)),
                "latency_ms": summary(primary),
                "run_end_ms": summary(run_end),
                "samples_ms": [round(v, 4) for v in primary],
                "run_end_samples_ms": [round(v, 4) for v in run_end],
            }
        return result


def goal_met(data: dict[str, Any]) -> bool:
    p99 = data["latency_ms"]["p99"]
    return p99 is not None and p99 <= GOAL_P99_MS and data["not_observed"] == 0


def latency_table(phases: dict[str, Any]) -> str:
    rows = []
    for phase, data in phases.items():
        lat = data["latency_ms"]
        cpu = data.get("cpu") or {}
        rows.append(
            [
                phase,
                data["measured_as"].split("-> ")[1],
                lat["n"],
                lat["p50"],
                lat["p95"],
                lat["p99"],
                lat["max"],
                data["run_end_ms"]["p50"],
                data["run_end_ms"]["p99"],
                data["client_errors"] + data["not_observed"] + data["admitted_before_close"],
                cpu.get("other_cpu_pct"),
                goal_met(data),
            ]
        )
    headers = ["phase", "until", "n", "p50", "p95", "p99", "max", "run end p50", "run end p99"]
    headers += ["errors/unseen", "others' CPU %", f"p99 <= {GOAL_P99_MS:g} ms"]
    return table(headers, rows)


LEAK_NAMES = (
    "active_runs",
    "queued_runs",
    "lanes_held",
    "lanes_waiting",
    "lane_tickets",
    "upstream_connections_open",
    "tasks_delta",
    "fds_delta",
)


def leaks_found(leaks: dict[str, Any]) -> int:
    """What was left behind (fewer tasks or fds than at the start is no leak)."""
    return sum(max(0, leaks.get(name) or 0) for name in LEAK_NAMES)


def print_report(result: dict[str, Any]) -> None:
    config = result["config"]
    print()
    print(
        f"Close -> release, ms: {config['concurrency']} clients in flight, closes spread over "
        f"{config['spread_ms']:g} ms (goal: p99 <= {GOAL_P99_MS:g} ms in every phase)"
    )
    print(latency_table(result["phases"]))
    if result["isolated"]:
        print()
        print("The same, one client at a time")
        print(latency_table(result["isolated"]))
    floor = result["floor_ms"]
    print()
    print(
        f"Measurement floor (aborts sent straight to the fake upstream, no gateway): "
        f"p50 {fmt(floor['p50'])} ms, p99 {fmt(floor['p99'])} ms, n={floor['n']}"
    )
    leaks = result["leaks"]
    print()
    print(f"Leaks after {leaks['aborts']} aborts (must be 0): {leaks_found(leaks)} found")
    print(
        table(
            ["what", "left (deltas: against the idle start)"],
            [[n, leaks.get(n)] for n in LEAK_NAMES],
        )
    )
    if "rss_before_mb" in leaks:
        print(f"gateway RSS {leaks['rss_before_mb']:.1f} MB -> {leaks['rss_after_mb']:.1f} MB")
    print(f"gateway log lines reporting errors: {leaks['gateway_log_errors']}")
    for line in leaks["gateway_log_error_examples"][:3]:
        print(f"  e.g. {line[:160]}")
    for note in result["notes"]:
        print(f"note: {note}")


def plot(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    plt = pyplot(args)
    if plt is None:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, key, title in (
        (axes[0], "samples_ms", "client close → upstream closed / left the queue"),
        (axes[1], "run_end_samples_ms", "client close → run ended (lane released)"),
    ):
        for phase, data in result["phases"].items():
            values = sorted(max(v, 0.001) for v in data[key])
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(values, ys, where="post", label=f"{phase} (n={len(values)})")
        floor = sorted(max(v, 0.001) for v in result["floor_samples_ms"])
        if key == "samples_ms" and floor:
            ys = [(i + 1) / len(floor) for i in range(len(floor))]
            ax.step(floor, ys, where="post", color="black", linestyle=":", label="no gateway")
        ax.axvline(
            GOAL_P99_MS,
            color="red",
            linestyle="--",
            linewidth=1,
            label=f"goal p99 {GOAL_P99_MS:g} ms",
        )
        ax.axhline(0.99, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("ms (log)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("fraction of aborts")
    axes[0].legend(fontsize=8, loc="lower right")
    config = result["config"]
    fig.suptitle(
        f"Disconnect latency CDF per phase: {config['concurrency']} clients in flight, "
        f"closes spread over {config['spread_ms']:g} ms ({result['leaks']['aborts']} aborts)"
    )
    fig.tight_layout()
    path = args.out / "cancel_cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(4 * args.concurrency + args.max_concurrent + 1000)
    async with open_stack(
        args,
        name="cancel",
        records=True,
        introspection=True,
        max_concurrent=args.max_concurrent,
    ) as stack:
        print(
            f"cancel: {args.aborts} aborts over {', '.join(args.phases)}; {args.concurrency} "
            f"clients in flight, maxConcurrent {args.max_concurrent}, close={args.close}"
        )
        result = await Bench(args, stack).run()
    result["config"] = {
        "aborts": args.aborts,
        "concurrency": args.concurrency,
        "max_concurrent": args.max_concurrent,
        "phases": args.phases,
        "close": args.close,
        "spread_ms": args.spread_ms,
        "isolated": args.isolated,
        "seed": args.seed,
        "target": args.target or "bench._server (create_app + Hypercorn trio, like gateway serve)",
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--aborts", type=int, default=10_000, help="client aborts in all phases")
    parser.add_argument("--concurrency", type=int, default=64, help="clients in flight")
    parser.add_argument(
        "--max-concurrent", type=int, default=None, help="agents.defaults.maxConcurrent"
    )
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument("--close", choices=["fin", "rst", "random"], default="fin")
    parser.add_argument(
        "--spread-ms",
        type=float,
        default=1000.0,
        help="each client closes at a random moment this long after reaching its phase",
    )
    parser.add_argument(
        "--isolated", type=int, default=20, help="aborts per phase one at a time (0: none)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="cProfile the gateway into this file")
    args = parser.parse_args(argv)
    if args.max_concurrent is None:
        args.max_concurrent = args.concurrency
    if args.max_concurrent < args.concurrency:
        parser.error("--max-concurrent must be at least --concurrency")
    result = trio.run(amain, args)
    result["environment"] = environment()
    result["plots"] = plot(args, result)
    path = write_json(args.out, "cancel", result)
    print_report(result)
    print(f"\nwrote {path}" + "".join(f", {p}" for p in result["plots"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
