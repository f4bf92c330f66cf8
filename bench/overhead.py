"""What the gateway adds: the same requests straight to the fake upstream and through the gateway.

Both paths are measured in one run, interleaved: for each concurrency ``c`` (``--concurrency``,
default 1, 16, 64), ``--rounds`` rounds each run a block of ``c`` closed-loop clients against the
fake upstream and a block against the gateway (the order alternates), ``--block-seconds`` each.
Every client keeps its HTTP/1.1 connection alive, like the gateway's own upstream pool.

- Short streams (``--tokens`` tokens, no delay): time to first token (request written -> first
  non-empty ``content`` received) and total time (-> end of the response); the gateway's added
  time is the difference of the percentiles (the samples are not paired).
- One long zero-delay stream (``--long-tokens``), one client, ``--long-reps`` times per path:
  added time per token = (gateway total - direct total) / tokens, and the gateway's CPU time per
  token (``/proc/<pid>/stat``, when it runs here).
- Non-streaming requests at c = 1: added total time.

The fake upstream gets the same knobs either way (carried in the message text), and the direct
requests ask for ``stream_options.include_usage`` as the gateway does upstream.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import trio

from bench.client import Answer, Endpoint, H11Client, chat_body, headers_for, tagged_text
from bench.common import (
    CpuMonitor,
    Stack,
    cpu_seconds,
    environment,
    fmt,
    open_stack,
    parser_for,
    percentile,
    pyplot,
    raise_fd_limit,
    summary,
    table,
    write_json,
)

# The goal: added time to first token, p50, one client at a time. The per-token cost and the
# higher concurrencies are reported without a goal.
GOAL_TTFT_MS = 1.0
PATHS = ("direct", "gateway")


class Paths:
    """How to send one request straight to the fake upstream or through the gateway."""

    def __init__(self, stack: Stack) -> None:
        assert stack.upstream is not None
        self.stack = stack
        self.endpoints = {
            "direct": Endpoint.parse(stack.upstream.base_url),
            "gateway": stack.gateway,
        }
        self.paths = {
            "direct": self.endpoints["direct"].path("/chat/completions"),
            "gateway": stack.gateway.path("/v1/chat/completions"),
        }
        self.headers = {"direct": headers_for(None), "gateway": headers_for(stack.token)}

    def body(self, path: str, knobs: dict[str, Any], *, stream: bool, tag: str) -> bytes:
        text = tagged_text(tag, knobs)
        if path == "direct":
            extra = {"stream_options": {"include_usage": True}} if stream else {}
            return chat_body("fake", text, stream=stream, **extra)
        return chat_body(self.stack.model, text, stream=stream)

    async def send(self, client: H11Client, path: str, body: bytes) -> Answer:
        return await client.request("POST", self.paths[path], self.headers[path], body)


async def block(
    paths: Paths, path: str, concurrency: int, seconds: float, body: bytes, limit: int
) -> tuple[list[Answer], int, float]:
    """``concurrency`` closed-loop clients on ``path`` for ``seconds`` (at most ``limit``
    requests each); returns the answers, the number of failures and the wall time."""
    answers: list[Answer] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        client = H11Client(paths.endpoints[path])
        try:
            for _ in range(limit):
                if trio.current_time() >= deadline:
                    return
                try:
                    answer = await paths.send(client, path, body)
                except (OSError, ConnectionError):
                    failures += 1
                    await client.aclose()
                    continue
                if answer.status == 200:
                    answers.append(answer)
                else:
                    failures += 1
        finally:
            await client.aclose()

    started = time.monotonic()
    deadline = trio.current_time() + seconds
    with trio.move_on_after(seconds + 30):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return answers, failures, time.monotonic() - started


def ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


async def short_streams(args: argparse.Namespace, paths: Paths) -> dict[str, Any]:
    knobs = {"tokens": args.tokens, "token_delay": 0}
    out: dict[str, Any] = {}
    for concurrency in args.concurrency:
        ttft: dict[str, list[float]] = {p: [] for p in PATHS}
        total: dict[str, list[float]] = {p: [] for p in PATHS}
        failures = dict.fromkeys(PATHS, 0)
        wall = dict.fromkeys(PATHS, 0.0)
        gateway_cpu = 0.0
        for round_ in range(args.rounds):
            order = PATHS if round_ % 2 == 0 else PATHS[::-1]
            for path in order:
                body = paths.body(path, knobs, stream=True, tag=f"short-c{concurrency}")
                before = cpu_seconds(paths.stack.gateway_pid) if paths.stack.gateway_pid else None
                answers, failed, elapsed = await block(
                    paths, path, concurrency, args.block_seconds, body, args.max_requests
                )
                if path == "gateway" and before is not None:
                    gateway_cpu += (cpu_seconds(paths.stack.gateway_pid) or 0) - before  # type: ignore[arg-type]
                failures[path] += failed
                wall[path] += elapsed
                for answer in answers:
                    if answer.first_content is not None:
                        ttft[path].append(answer.first_content - answer.started)
                    total[path].append(answer.ended - answer.started)
        entry: dict[str, Any] = {}
        for path in PATHS:
            entry[path] = {
                "ttft_ms": summary(ms(ttft[path])),
                "total_ms": summary(ms(total[path])),
                "requests_per_s": len(total[path]) / wall[path] if wall[path] else None,
                "failures": failures[path],
            }
        entry["added"] = {
            "ttft_p50_ms": _diff(entry, "ttft_ms", "p50"),
            "ttft_p99_ms": _diff(entry, "ttft_ms", "p99"),
            "total_p50_ms": _diff(entry, "total_ms", "p50"),
            "total_p99_ms": _diff(entry, "total_ms", "p99"),
        }
        if gateway_cpu and total["gateway"]:
            entry["gateway_cpu_ms_per_request"] = 1000 * gateway_cpu / len(total["gateway"])
        out[str(concurrency)] = entry
        print(
            f"  c={concurrency}: TTFT p50 direct {fmt(entry['direct']['ttft_ms']['p50'])} ms, "
            f"gateway {fmt(entry['gateway']['ttft_ms']['p50'])} ms "
            f"({entry['gateway']['ttft_ms']['n']} requests)"
        )
    return out


def _diff(entry: dict[str, Any], metric: str, stat: str) -> float | None:
    direct, gateway = entry["direct"][metric][stat], entry["gateway"][metric][stat]
    return None if direct is None or gateway is None else gateway - direct


async def long_stream(args: argparse.Namespace, paths: Paths) -> dict[str, Any]:
    knobs = {"tokens": args.long_tokens, "token_delay": 0}
    totals: dict[str, list[float]] = {p: [] for p in PATHS}
    cpu_total = 0.0
    pid = paths.stack.gateway_pid
    clients = {p: H11Client(paths.endpoints[p]) for p in PATHS}
    try:
        for rep in range(args.long_reps + 1):  # the first one warms up
            for path in PATHS if rep % 2 == 0 else PATHS[::-1]:
                body = paths.body(path, knobs, stream=True, tag=f"long-{rep}")
                before = cpu_seconds(pid) if pid else None
                answer = await paths.send(clients[path], path, body)
                after = cpu_seconds(pid) if pid else None
                if answer.status != 200:
                    raise RuntimeError(f"long stream via {path}: HTTP {answer.status}")
                if rep == 0:
                    continue
                totals[path].append(answer.ended - answer.started)
                if path == "gateway" and before is not None and after is not None:
                    cpu_total += after - before
    finally:
        for client in clients.values():
            await client.aclose()
    direct = percentile(totals["direct"], 50) or 0.0
    gateway = percentile(totals["gateway"], 50) or 0.0
    tokens = args.long_tokens
    out: dict[str, Any] = {
        "tokens": tokens,
        "direct_total_ms": ms(totals["direct"]),
        "gateway_total_ms": ms(totals["gateway"]),
        "direct_tokens_per_s": tokens / direct if direct else None,
        "gateway_tokens_per_s": tokens / gateway if gateway else None,
        "added_per_token_ms": 1000 * (gateway - direct) / tokens,
    }
    if pid:
        out["gateway_cpu_per_token_ms"] = 1000 * cpu_total / (tokens * len(totals["gateway"]))
    print(
        f"  long stream of {tokens} tokens: direct {direct * 1000:.0f} ms, "
        f"gateway {gateway * 1000:.0f} ms, added {out['added_per_token_ms'] * 1000:.1f} µs/token"
    )
    return out


async def non_streaming(args: argparse.Namespace, paths: Paths) -> dict[str, Any]:
    knobs = {"tokens": args.tokens, "token_delay": 0}
    totals: dict[str, list[float]] = {p: [] for p in PATHS}
    for round_ in range(args.rounds):
        for path in PATHS if round_ % 2 == 0 else PATHS[::-1]:
            body = paths.body(path, knobs, stream=False, tag="json")
            answers, _, _ = await block(paths, path, 1, args.block_seconds / 2, body, 10_000)
            totals[path] += [a.ended - a.started for a in answers]
    out: dict[str, Any] = {p: {"total_ms": summary(ms(totals[p]))} for p in PATHS}
    out["added"] = {"total_p50_ms": _diff(out, "total_ms", "p50")}
    return out


def print_report(result: dict[str, Any]) -> None:
    rows = []
    for concurrency, entry in result["short"].items():
        direct, gateway, added = entry["direct"], entry["gateway"], entry["added"]
        rows.append(
            [
                concurrency,
                direct["ttft_ms"]["p50"],
                gateway["ttft_ms"]["p50"],
                added["ttft_p50_ms"],
                direct["ttft_ms"]["p99"],
                gateway["ttft_ms"]["p99"],
                added["ttft_p99_ms"],
                added["total_p50_ms"],
                added["total_p99_ms"],
                gateway["requests_per_s"],
                entry.get("gateway_cpu_ms_per_request"),
                gateway["ttft_ms"]["n"],
                direct["failures"] + gateway["failures"],
            ]
        )
    config = result["config"]
    print()
    print(
        f"Added latency, ms: {config['tokens']}-token zero-delay streams, closed loop, "
        "direct vs through the gateway"
    )
    headers = ["c", "TTFT p50 direct", "TTFT p50 gw", "added p50", "TTFT p99 direct"]
    headers += ["TTFT p99 gw", "added p99", "added total p50", "added total p99", "gw req/s"]
    headers += ["gw CPU ms/req", "n (gw)", "failures"]
    print(table(headers, rows))
    long = result["long"]
    ttft_c1 = result["short"].get("1", {}).get("added", {}).get("ttft_p50_ms")
    print()
    rows = [
        [
            "added TTFT p50 at c=1",
            fmt(ttft_c1, 3) + " ms",
            f"<= {GOAL_TTFT_MS} ms",
            ttft_c1 is not None and ttft_c1 <= GOAL_TTFT_MS,
        ],
        [
            f"added time per token ({long['tokens']}-token stream)",
            fmt(long["added_per_token_ms"], 4) + " ms",
            "",
            "",
        ],
        [
            "gateway CPU per token",
            fmt(long.get("gateway_cpu_per_token_ms"), 4) + " ms",
            "",
            "",
        ],
        [
            "tokens/s direct / gateway",
            f"{fmt(long['direct_tokens_per_s'], 0)} / {fmt(long['gateway_tokens_per_s'], 0)}",
            "",
            "",
        ],
        [
            "added total, non-streaming, c=1 (p50)",
            fmt(result["json"]["added"]["total_p50_ms"], 3) + " ms",
            "",
            "",
        ],
    ]
    print(table(["measure", "value", "goal", "met"], rows))


def plot(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    plt = pyplot(args)
    if plt is None:
        return []
    levels = [int(c) for c in result["short"]]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for path, color in (("direct", "tab:blue"), ("gateway", "tab:orange")):
        for stat, style in (("p50", "-"), ("p99", "--")):
            ys = [result["short"][str(c)][path]["ttft_ms"][stat] for c in levels]
            ax.plot(levels, ys, style, marker="o", color=color, label=f"{path} {stat}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("time to first token, ms (log)")
    ax.set_title("TTFT: direct vs through the gateway")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for key, label in (
        ("ttft_p50_ms", "added TTFT p50"),
        ("ttft_p99_ms", "added TTFT p99"),
        ("total_p50_ms", "added total p50"),
    ):
        ys = [result["short"][str(c)]["added"][key] for c in levels]
        ax.plot(levels, ys, marker="o", label=label)
    ax.axhline(
        GOAL_TTFT_MS,
        color="red",
        linestyle="--",
        linewidth=1,
        label=f"goal at c=1: {GOAL_TTFT_MS:g} ms",
    )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("ms added by the gateway (log)")
    ax.set_title("Gateway overhead vs concurrency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"{result['config']['tokens']}-token zero-delay streams, closed-loop clients")
    fig.tight_layout()
    path = args.out / "overhead.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(4 * max(args.concurrency) + 1000)
    async with open_stack(args, name="overhead", max_concurrent=4 * max(args.concurrency)) as stack:
        paths = Paths(stack)
        print(f"overhead: c = {', '.join(map(str, args.concurrency))}; {args.rounds} rounds")
        warm = paths.body("gateway", {"tokens": 4}, stream=True, tag="warm")
        await block(paths, "gateway", 4, 1.0, warm, 50)
        monitor = CpuMonitor()
        monitor.start(stack.gateway_pid, stack.upstream.process.pid if stack.upstream else None)
        result: dict[str, Any] = {"short": await short_streams(args, paths)}
        result["long"] = await long_stream(args, paths)
        result["json"] = await non_streaming(args, paths)
        result["cpu"] = monitor.stop()
    result["config"] = {
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "block_seconds": args.block_seconds,
        "tokens": args.tokens,
        "long_tokens": args.long_tokens,
        "long_reps": args.long_reps,
        "target": args.target or "gateway serve (separate process)",
        "upstream": "bench._upstream (fake upstream, separate process)",
        "client": "h11 over trio sockets, keep-alive, one Python process",
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=4, help="direct/gateway block pairs per c")
    parser.add_argument("--block-seconds", type=float, default=1.5)
    parser.add_argument("--max-requests", type=int, default=5000, help="per client and block")
    parser.add_argument("--tokens", type=int, default=16, help="tokens of the short streams")
    parser.add_argument("--long-tokens", type=int, default=10_000)
    parser.add_argument("--long-reps", type=int, default=4)
    args = parser.parse_args(argv)
    result = trio.run(amain, args)
    result["environment"] = environment()
    result["plots"] = plot(args, result)
    path = write_json(args.out, "overhead", result)
    print_report(result)
    cpu = result["cpu"]
    print(
        f"\nCPU during the run: gateway {cpu['gateway_cpu_pct']:.0f} %, ours in all "
        f"{cpu['bench_cpu_pct']:.0f} %, other processes {cpu['other_cpu_pct']:.0f} % (of 100 % "
        "per core)"
    )
    print(f"wrote {path}" + "".join(f", {p}" for p in result["plots"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
