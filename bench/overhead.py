"""What the gateway adds: the same requests straight to the fake upstream and through the gateway,
as a chat completion and as a Responses API request.

Three paths are measured in one run, interleaved (``bench._overhead_measure``): a chat completion
straight to the fake upstream (``direct``), the same through the gateway's
``/v1/chat/completions`` (``gateway``, "chat" in the tables) and ``/v1/responses`` with the same
text as ``input`` (``responses``; the gateway sends the fake upstream the same chat completion
request either way). For each concurrency ``c`` (``--concurrency``, default 1, 16, 64),
``--rounds`` rounds each run a block of ``c`` closed-loop clients on each path, ``--block-seconds``
each, the order reversed every other round. Every client keeps its HTTP/1.1 connection alive,
like the gateway's own upstream pool.

- Short streams (``--tokens`` tokens, no delay): time to first token (request written -> first
  non-empty ``content``, or for Responses the first ``response.output_text.delta`` with a
  non-empty ``delta``) and total time (-> end of the response); the gateway's added time is the
  difference of the percentiles (the samples are not paired); the gateway's CPU per request.
- One long zero-delay stream (``--long-tokens``), one client, ``--long-reps`` times per path:
  added time per token = (gatewayed total - direct total) / tokens, and the gateway's CPU time
  per token (``/proc/<pid>/stat``, when it runs here); medians of the reps.
- Non-streaming requests at c = 1: added total time.

The fake upstream gets the same knobs either way (carried in the message text), and the direct
requests ask for ``stream_options.include_usage`` as the gateway does upstream. Responses are
requested with the API's default ``store`` (true: each response is committed to the gateway's
response store before ``response.completed``), or with ``store: false`` (``--no-store``), which
leaves out what chat completions never do. The goals, the comparison and the report:
``bench._overhead_report``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import trio

from bench._overhead_measure import (
    GATEWAYED,
    Paths,
    block,
    long_stream,
    non_streaming,
    short_streams,
)
from bench._overhead_report import (
    GOAL_RESPONSES_RATIO,
    GOAL_TTFT_MS,
    plot,
    print_report,
    responses_vs_chat,
)
from bench.common import CpuMonitor, environment, open_stack, parser_for, raise_fd_limit, write_json

# The goals and what judges them live with the report; ``bench._summary`` reads them from here.
__all__ = ["GOAL_RESPONSES_RATIO", "GOAL_TTFT_MS", "main", "responses_vs_chat"]


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit(4 * max(args.concurrency) + 1000)
    async with open_stack(
        args, name="overhead", max_concurrent=4 * max(args.concurrency), responses=True
    ) as stack:
        paths = Paths(stack, store=not args.no_store)
        print(f"overhead: c = {', '.join(map(str, args.concurrency))}; {args.rounds} rounds")
        for path in GATEWAYED:
            warm = paths.body(path, {"tokens": 4}, stream=True, tag="warm")
            await block(paths, path, 4, 1.0, warm, 50)
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
        "responses_store": not args.no_store,
        "target": args.target or "gateway serve (separate process)",
        "upstream": "bench._upstream (fake upstream, separate process)",
        "client": "h11 over trio sockets, keep-alive, one Python process",
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = parser_for(__doc__)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rounds", type=int, default=4, help="blocks per path and c")
    parser.add_argument("--block-seconds", type=float, default=1.5)
    parser.add_argument("--max-requests", type=int, default=5000, help="per client and block")
    parser.add_argument("--tokens", type=int, default=16, help="tokens of the short streams")
    parser.add_argument("--long-tokens", type=int, default=10_000)
    # A stream's CPU is read in 10 ms ticks and others' jobs add to it: 4 reps gave per-token
    # ratios ±15 % apart between runs, too coarse for a 10 % goal; 10 cost ~10 s more.
    parser.add_argument("--long-reps", type=int, default=10)
    parser.add_argument(
        "--no-store",
        action="store_true",
        help="send store: false with the Responses requests (default: the API's, stored)",
    )
    args = parser.parse_args(argv)
    result = trio.run(amain, args)
    result["environment"] = environment()
    result["responses_vs_chat"] = responses_vs_chat(result)
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
