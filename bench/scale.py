"""Many open streams: the gateway's memory, and whether every stream keeps flowing.

The gateway runs as a separate process (``gateway serve``); the fake upstream (another process)
sends one token every ``--token-interval`` seconds to every stream. Streams are opened in
batches and kept open, and at each level N of ``--levels`` (cumulative: 100, 500, 1000, 2000)
the benchmark waits until every stream has its first token, lets it settle, then watches a
``--window``: VmRSS of the gateway (``/proc/<pid>/status``; the peak during the window), RSS per
stream ((RSS - idle RSS) / N), the gateway's CPU, and per stream how many tokens arrived during
the window: a stream that got none stalled. At the end every stream is closed and the RSS after
that, and the peak (VmHWM), are read.

With ``--target``, RSS needs ``--gateway-pid``, and its ``--model`` must be routed to the fake
upstream started on ``--upstream-port``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any

import trio

from bench.client import CONTENT, chat_body, headers_for, request_bytes, tagged_text
from bench.common import (
    CpuMonitor,
    Stack,
    environment,
    open_stack,
    parser_for,
    percentile,
    proc_status_kb,
    pyplot,
    raise_fd_limit,
    table,
    write_json,
)

# The goal: at 2,000 open streams, all flowing, at most 50 KB of gateway RSS per stream
# ((RSS - idle RSS) / streams).
GOAL_STREAMS = 2000
GOAL_KB_PER_STREAM = 50.0


@dataclass
class Stream:
    index: int
    opened_at: float = 0.0
    first_token_at: float | None = None
    last_token_at: float | None = None
    tokens: int = 0
    ended: str | None = None  # why it stopped, if it did


class Streams:
    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.streams: list[Stream] = []
        self.changed = trio.Event()  # set when a stream gets its first token or ends
        self.knobs = {"tokens": args.tokens, "token_delay": args.token_interval}

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def one(self, stream: Stream, task_status: trio.TaskStatus[None]) -> None:
        try:
            await self._one(stream, task_status)
        finally:
            self._changed()

    async def _one(self, stream: Stream, task_status: trio.TaskStatus[None]) -> None:
        gateway = self.stack.gateway
        body = chat_body(
            self.stack.model, tagged_text(f"scale-{stream.index}", self.knobs), stream=True
        )
        data = request_bytes(
            gateway,
            "POST",
            gateway.path("/v1/chat/completions"),
            headers_for(self.stack.token),
            body,
        )
        stream.opened_at = time.monotonic()
        try:
            sock = await trio.open_tcp_stream(gateway.host, gateway.port)
        except OSError as exc:
            stream.ended = f"connect: {exc}"
            task_status.started()
            return
        task_status.started()
        tail = b""
        try:
            async with sock:
                await sock.send_all(data)
                while True:
                    chunk = await sock.receive_some(65536)
                    if not chunk:
                        stream.ended = "closed by the gateway"
                        return
                    found = len(CONTENT.findall(tail + chunk))
                    tail = chunk[-16:]
                    if found:
                        now = time.monotonic()
                        stream.tokens += found
                        stream.last_token_at = now
                        if stream.first_token_at is None:
                            stream.first_token_at = now
                            self._changed()
        except OSError as exc:
            stream.ended = f"{type(exc).__name__}: {exc}"

    async def open_until(self, nursery: trio.Nursery, count: int) -> None:
        while len(self.streams) < count:
            for _ in range(min(self.args.batch, count - len(self.streams))):
                stream = Stream(len(self.streams))
                self.streams.append(stream)
                await nursery.start(self.one, stream)
            await trio.sleep(self.args.batch_pause)
        with trio.move_on_after(self.args.ramp_timeout):
            while any(s.first_token_at is None and s.ended is None for s in self.streams):
                await self.changed.wait()


def rss_mb(pid: int | None, field: str = "VmRSS") -> float | None:
    if pid is None:
        return None
    value = proc_status_kb(pid, field)
    return value / 1024 if value is not None else None


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    top = max(args.levels)
    limit = raise_fd_limit(3 * top + 1000)
    if limit < 2 * top + 100:
        raise SystemExit(f"the open-file limit {limit} is too low for {top} streams")
    levels: list[dict[str, Any]] = []
    async with open_stack(args, name="scale", max_concurrent=max(4096, 2 * top)) as stack:
        pid = stack.gateway_pid
        streams = Streams(args, stack)
        print(f"scale: levels {args.levels}, a token every {args.token_interval:g} s per stream")
        # Warm-up: a few short streams, so the idle figure includes what the first use loads.
        async with trio.open_nursery() as nursery:
            warm = Streams(args, stack)
            warm.knobs = {"tokens": 3, "token_delay": 0}
            await warm.open_until(nursery, 5)
        await trio.sleep(1.0)
        idle = rss_mb(pid)
        started = time.monotonic()
        async with trio.open_nursery() as nursery:
            for level in sorted(args.levels):
                t0 = time.monotonic()
                await streams.open_until(nursery, level)
                ramp = time.monotonic() - t0
                await trio.sleep(args.settle)
                levels.append(await measure(args, stack, streams, level, idle, ramp))
                if time.monotonic() - started > args.tokens * args.token_interval * 0.8:
                    print("  stopping early: the upstream streams would soon end")
                    break
            peak = rss_mb(pid, "VmHWM")
            nursery.cancel_scope.cancel()
        await trio.sleep(3.0)
        after = rss_mb(pid)
    return {
        "idle_rss_mb": idle,
        "levels": levels,
        "peak_rss_mb": peak,
        "rss_after_close_mb": after,
        "config": {
            "levels": args.levels,
            "token_interval_s": args.token_interval,
            "window_s": args.window,
            "target": args.target or "gateway serve (separate process)",
            "upstream": "bench._upstream (fake upstream, separate process)",
        },
    }


async def measure(
    args: argparse.Namespace,
    stack: Stack,
    streams: Streams,
    level: int,
    idle: float | None,
    ramp: float,
) -> dict[str, Any]:
    pid = stack.gateway_pid
    live = streams.streams[:level]
    before = [s.tokens for s in live]
    monitor = CpuMonitor()
    monitor.start(pid, stack.upstream.process.pid if stack.upstream else None)
    samples: list[float] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < args.window:
        value = rss_mb(pid)
        if value is not None:
            samples.append(value)
        await trio.sleep(0.25)
    cpu = monitor.stop()
    got = [s.tokens - b for s, b in zip(live, before, strict=True)]
    stalled = sum(1 for n in got if n == 0)
    ended = [s.ended for s in live if s.ended]
    never = sum(1 for s in live if s.first_token_at is None)
    rss = max(samples) if samples else None
    ttft = [s.first_token_at - s.opened_at for s in live if s.first_token_at is not None]
    entry = {
        "streams": level,
        "rss_mb": rss,
        "rss_per_stream_kb": (rss - idle) * 1024 / level if rss and idle else None,
        "streams_flowing": level - stalled - len(ended),
        "stalled": stalled,
        "ended": len(ended),
        "ended_examples": sorted(set(ended))[:3],
        "never_started": never,
        "tokens_in_window_min": min(got) if got else None,
        "tokens_in_window_p50": percentile(got, 50),
        "expected_tokens_in_window": args.window / args.token_interval,
        "first_token_p50_s": percentile(ttft, 50),
        "first_token_max_s": max(ttft) if ttft else None,
        "ramp_s": ramp,
        "gateway_cpu_pct": cpu["gateway_cpu_pct"],
        "other_cpu_pct": cpu["other_cpu_pct"],
    }
    print(
        f"  {level} streams: RSS {entry['rss_mb'] or 0:.1f} MB, flowing "
        f"{entry['streams_flowing']}/{level}, gateway CPU {cpu['gateway_cpu_pct']:.0f} %"
    )
    return entry


def goal_met(level: dict[str, Any]) -> bool:
    per_stream = level["rss_per_stream_kb"]
    flowing = level["streams_flowing"] == level["streams"]
    return per_stream is not None and per_stream <= GOAL_KB_PER_STREAM and flowing


def print_report(result: dict[str, Any]) -> None:
    rows = []
    for level in result["levels"]:
        n = level["streams"]
        goal: bool | str = goal_met(level) if n == GOAL_STREAMS else ""
        rows.append(
            [
                n,
                level["rss_mb"],
                level["rss_per_stream_kb"],
                f"{level['streams_flowing']}/{n}",
                level["tokens_in_window_min"],
                level["tokens_in_window_p50"],
                level["first_token_max_s"],
                level["ramp_s"],
                level["gateway_cpu_pct"],
                goal,
            ]
        )
    print()
    print(
        f"Open streams vs gateway memory (idle RSS {result['idle_rss_mb'] or 0:.1f} MB; goal: "
        f"<= {GOAL_KB_PER_STREAM:g} KB per stream at {GOAL_STREAMS} streams, all flowing)"
    )
    headers = ["streams", "RSS MB", "KB/stream", "flowing", "tokens in window min"]
    headers += ["p50", "first token max s", "ramp s", "gateway CPU %", "goal met"]
    print(table(headers, rows))
    print(
        f"peak RSS (VmHWM) {result['peak_rss_mb'] or 0:.1f} MB; after closing every stream "
        f"{result['rss_after_close_mb'] or 0:.1f} MB"
    )


def plot(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    plt = pyplot(args)
    if plt is None or not result["levels"]:
        return []
    xs = [level["streams"] for level in result["levels"]]
    rss = [level["rss_mb"] for level in result["levels"]]
    per = [level["rss_per_stream_kb"] for level in result["levels"]]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(xs, rss, marker="o", label="gateway RSS (MB)")
    if result["idle_rss_mb"]:
        ax.axhline(result["idle_rss_mb"], color="grey", linestyle=":", label="idle RSS")
    ax.set_xlabel("concurrent open streams")
    ax.set_ylabel("RSS, MB")
    ax.set_ylim(0, max(r or 0 for r in rss) * 1.15)
    ax.grid(True, alpha=0.3)
    twin = ax.twinx()
    twin.plot(xs, per, marker="s", color="tab:orange", linestyle="--", label="KB per stream")
    twin.plot(
        [GOAL_STREAMS],
        [GOAL_KB_PER_STREAM],
        "r*",
        markersize=12,
        label=f"goal: ≤ {GOAL_KB_PER_STREAM:g} KB per stream at {GOAL_STREAMS}",
    )
    twin.set_ylabel("KB per stream")
    twin.set_ylim(0, max([*((p or 0) for p in per), GOAL_KB_PER_STREAM]) * 1.5)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    ax.legend(handles, labels, fontsize=8, loc="upper left")
    ax.set_title("Gateway memory vs open streams (one worker)")
    fig.tight_layout()
    path = args.out / "scale_rss.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--levels", type=int, nargs="+", default=[100, 500, 1000, 2000])
    parser.add_argument("--token-interval", type=float, default=2.0, help="seconds per token")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per upstream stream")
    parser.add_argument("--window", type=float, default=8.0, help="seconds watched per level")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before the window")
    parser.add_argument("--batch", type=int, default=50, help="streams opened at once")
    parser.add_argument("--batch-pause", type=float, default=0.25, help="seconds between batches")
    parser.add_argument("--ramp-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    result = trio.run(amain, args)
    result["environment"] = environment()
    result["plots"] = plot(args, result)
    path = write_json(args.out, "scale", result)
    print_report(result)
    print(f"\nwrote {path}" + "".join(f", {p}" for p in result["plots"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
