"""The measurements of ``bench.overhead``: the same requests on three paths, interleaved.

The paths: ``direct`` (a chat completion straight to the fake upstream), ``gateway`` (a chat
completion through the gateway; the key predates the Responses path and is kept so results of
earlier runs still read) and ``responses`` (``POST /v1/responses`` through the gateway, which
sends the fake upstream the same chat completion request as ``gateway`` does). Every part runs
the paths in blocks, in an order reversed from one round to the next, so the three see the same
machine; the gateway's CPU (``/proc/<pid>/stat``, when it runs here) is read around each
gatewayed block or stream.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import trio

from bench.client import (
    Answer,
    Endpoint,
    H11Client,
    chat_body,
    headers_for,
    responses_body,
    tagged_text,
)
from bench.common import Stack, cpu_seconds, fmt, percentile, summary

PATHS = ("direct", "gateway", "responses")
# Where each gatewayed path's figures go in the result (the chat path's keys are the original ones).
GATEWAYED = ("gateway", "responses")
ADDED = {"gateway": "added", "responses": "responses_added"}
CPU_PER_REQUEST = {
    "gateway": "gateway_cpu_ms_per_request",
    "responses": "responses_cpu_ms_per_request",
}
ADDED_PER_TOKEN = {"gateway": "added_per_token_ms", "responses": "responses_added_per_token_ms"}
CPU_PER_TOKEN = {"gateway": "gateway_cpu_per_token_ms", "responses": "responses_cpu_per_token_ms"}


class Paths:
    """How to send one request on each path (``store``: false sends ``store: false`` with the
    Responses requests; true leaves the API's default, which stores them)."""

    def __init__(self, stack: Stack, *, store: bool = True) -> None:
        assert stack.upstream is not None
        self.stack = stack
        self.responses_extra: dict[str, Any] = {} if store else {"store": False}
        direct = Endpoint.parse(stack.upstream.base_url)
        self.endpoints = {"direct": direct, "gateway": stack.gateway, "responses": stack.gateway}
        self.paths = {
            "direct": direct.path("/chat/completions"),
            "gateway": stack.gateway.path("/v1/chat/completions"),
            "responses": stack.gateway.path("/v1/responses"),
        }
        gateway_headers = headers_for(stack.token)
        self.headers = {
            "direct": headers_for(None),
            "gateway": gateway_headers,
            "responses": gateway_headers,
        }

    def body(self, path: str, knobs: dict[str, Any], *, stream: bool, tag: str) -> bytes:
        text = tagged_text(tag, knobs)
        if path == "direct":
            extra = {"stream_options": {"include_usage": True}} if stream else {}
            return chat_body("fake", text, stream=stream, **extra)
        if path == "responses":
            return responses_body(self.stack.model, text, stream=stream, **self.responses_extra)
        return chat_body(self.stack.model, text, stream=stream)

    async def send(self, client: H11Client, path: str, body: bytes) -> Answer:
        return await client.request("POST", self.paths[path], self.headers[path], body)

    def gateway_cpu(self) -> float | None:
        """The gateway's CPU seconds so far (``None`` when its PID is unknown)."""
        pid = self.stack.gateway_pid
        return cpu_seconds(pid) if pid else None


def path_order(round_: int) -> tuple[str, ...]:
    """The paths in the order of round ``round_`` (reversed every other round)."""
    return PATHS if round_ % 2 == 0 else PATHS[::-1]


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


def _diff(entry: dict[str, Any], path: str, metric: str, stat: str) -> float | None:
    direct, gateway = entry["direct"][metric][stat], entry[path][metric][stat]
    return None if direct is None or gateway is None else gateway - direct


async def short_streams(args: argparse.Namespace, paths: Paths) -> dict[str, Any]:
    """Per concurrency: TTFT and total time on each path, what each gatewayed path adds, and
    the gateway's CPU per request on each."""
    knobs = {"tokens": args.tokens, "token_delay": 0}
    out: dict[str, Any] = {}
    for concurrency in args.concurrency:
        ttft: dict[str, list[float]] = {p: [] for p in PATHS}
        total: dict[str, list[float]] = {p: [] for p in PATHS}
        failures = dict.fromkeys(PATHS, 0)
        wall = dict.fromkeys(PATHS, 0.0)
        cpu = dict.fromkeys(GATEWAYED, 0.0)
        for round_ in range(args.rounds):
            for path in path_order(round_):
                body = paths.body(path, knobs, stream=True, tag=f"short-c{concurrency}")
                before = paths.gateway_cpu()
                answers, failed, elapsed = await block(
                    paths, path, concurrency, args.block_seconds, body, args.max_requests
                )
                after = paths.gateway_cpu()
                if path in cpu and before is not None and after is not None:
                    cpu[path] += after - before
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
        for path in GATEWAYED:
            entry[ADDED[path]] = {
                "ttft_p50_ms": _diff(entry, path, "ttft_ms", "p50"),
                "ttft_p99_ms": _diff(entry, path, "ttft_ms", "p99"),
                "total_p50_ms": _diff(entry, path, "total_ms", "p50"),
                "total_p99_ms": _diff(entry, path, "total_ms", "p99"),
            }
            if cpu[path] and total[path]:
                entry[CPU_PER_REQUEST[path]] = 1000 * cpu[path] / len(total[path])
        out[str(concurrency)] = entry
        print(
            f"  c={concurrency}: TTFT p50 direct {fmt(entry['direct']['ttft_ms']['p50'])} ms, "
            f"chat {fmt(entry['gateway']['ttft_ms']['p50'])} ms "
            f"({entry['gateway']['ttft_ms']['n']} requests), "
            f"responses {fmt(entry['responses']['ttft_ms']['p50'])} ms "
            f"({entry['responses']['ttft_ms']['n']} requests)"
        )
    return out


async def long_stream(args: argparse.Namespace, paths: Paths) -> dict[str, Any]:
    """One long zero-delay stream per path, ``--long-reps`` times after a warm-up one: the time
    each gatewayed path adds per token and the gateway's CPU per token (medians of the reps)."""
    knobs = {"tokens": args.long_tokens, "token_delay": 0}
    totals: dict[str, list[float]] = {p: [] for p in PATHS}
    cpu: dict[str, list[float]] = {p: [] for p in GATEWAYED}
    clients = {p: H11Client(paths.endpoints[p]) for p in PATHS}
    try:
        for rep in range(args.long_reps + 1):  # the first one warms up
            for path in path_order(rep):
                body = paths.body(path, knobs, stream=True, tag=f"long-{rep}")
                before = paths.gateway_cpu()
                answer = await paths.send(clients[path], path, body)
                after = paths.gateway_cpu()
                if answer.status != 200:
                    raise RuntimeError(f"long stream via {path}: HTTP {answer.status}")
                if rep == 0:
                    continue
                totals[path].append(answer.ended - answer.started)
                if path in cpu and before is not None and after is not None:
                    cpu[path].append(after - before)
    finally:
        for client in clients.values():
            await client.aclose()
    tokens = args.long_tokens
    median = {p: percentile(totals[p], 50) or 0.0 for p in PATHS}
    out: dict[str, Any] = {"tokens": tokens}
    for path in PATHS:
        out[f"{path}_total_ms"] = ms(totals[path])
        out[f"{path}_tokens_per_s"] = tokens / median[path] if median[path] else None
    for path in GATEWAYED:
        out[ADDED_PER_TOKEN[path]] = 1000 * (median[path] - median["direct"]) / tokens
        if cpu[path]:
            out[f"{path}_cpu_ms"] = ms(cpu[path])  # per stream: whole clock ticks (10 ms here)
            # The median, like the times: other processes' bursts only ever add to a stream's CPU.
            out[CPU_PER_TOKEN[path]] = 1000 * (percentile(cpu[path], 50) or 0.0) / tokens
    print(
        f"  long stream of {tokens} tokens: direct {median['direct'] * 1000:.0f} ms, "
        f"chat {median['gateway'] * 1000:.0f} ms, responses {median['responses'] * 1000:.0f} ms; "
        f"added {out['added_per_token_ms'] * 1000:.1f} / "
        f"{out['responses_added_per_token_ms'] * 1000:.1f} µs/token"
    )
    return out


async def non_streaming(args: argparse.Namespace, paths: Paths) -> dict[str, Any]:
    """Non-streaming requests at c = 1: the total time each gatewayed path adds."""
    knobs = {"tokens": args.tokens, "token_delay": 0}
    totals: dict[str, list[float]] = {p: [] for p in PATHS}
    for round_ in range(args.rounds):
        for path in path_order(round_):
            body = paths.body(path, knobs, stream=False, tag="json")
            answers, _, _ = await block(paths, path, 1, args.block_seconds / 2, body, 10_000)
            totals[path] += [a.ended - a.started for a in answers]
    out: dict[str, Any] = {p: {"total_ms": summary(ms(totals[p]))} for p in PATHS}
    for path in GATEWAYED:
        out[ADDED[path]] = {"total_p50_ms": _diff(out, path, "total_ms", "p50")}
    return out
