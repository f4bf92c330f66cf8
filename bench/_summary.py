"""The summary table of ``bench.run_all``: one row per measure, from each benchmark's JSON.

Rows are ``[benchmark, measure, value, goal, met]``; ``goal`` and ``met`` are empty for what is
reported without a goal. The goals themselves come from the benchmark modules, so they are
written once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cancel, overhead, scale, startup, throughput, workers
from bench.common import fmt

Row = list[Any]


def load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def cancel_rows(result: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    concurrency = result["config"]["concurrency"]
    goal = cancel.GOAL_P99_MS
    for phase, data in result["phases"].items():
        lat = data["latency_ms"]
        solo = result.get("isolated", {}).get(phase, {}).get("latency_ms", {})
        until = "left queue" if "queue" in data["measured_as"] else "upstream closed"
        measure = (
            f"{phase}: close → {until}, p50 / p95 / p99 / max ms "
            f"({concurrency} in flight; one at a time p99 {fmt(solo.get('p99'))})"
        )
        value = " / ".join(fmt(lat[k]) for k in ("p50", "p95", "p99", "max"))
        rows.append(["cancel", measure, value, f"p99 ≤ {goal:g} ms", cancel.goal_met(data)])
    leaks = result["leaks"]
    left = {name: leaks.get(name) for name in cancel.LEAK_NAMES}
    measure = (
        f"leaks after {leaks['aborts']} aborts (runs, lanes, tickets, upstream connections, "
        "tasks, fds)"
    )
    value = ", ".join(f"{k}={v}" for k, v in left.items())
    met = cancel.leaks_found(leaks) == 0 and leaks["aborts"] >= 10_000
    rows.append(["cancel", measure, value, "all 0 after ≥ 10,000 aborts", met])
    if "rss_before_mb" in leaks:
        value = f"{leaks['rss_before_mb']:.1f} → {leaks['rss_after_mb']:.1f} MB"
        rows.append(["cancel", "gateway RSS before → after the aborts", value, "", ""])
    return rows


def overhead_rows(result: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    goal = overhead.GOAL_TTFT_MS
    for concurrency, entry in result["short"].items():
        added = entry["added"]
        ttft = f"{fmt(added['ttft_p50_ms'])} / {fmt(added['ttft_p99_ms'])}"
        first = concurrency == "1"
        met = added["ttft_p50_ms"] is not None and added["ttft_p50_ms"] <= goal
        rows.append(
            [
                "overhead",
                f"added TTFT p50 / p99, c={concurrency} (ms)",
                ttft,
                f"p50 ≤ {goal:g} ms" if first else "",
                met if first else "",
            ]
        )
        responses = entry.get("responses_added")
        if responses is not None:
            cpu = (
                f"gateway CPU per request {fmt(entry.get('responses_cpu_ms_per_request'))} ms, "
                f"chat {fmt(entry.get('gateway_cpu_ms_per_request'))} ms"
            )
            rows.append(
                [
                    "overhead",
                    f"Responses API: added TTFT p50 / p99, c={concurrency} (ms; {cpu})",
                    f"{fmt(responses['ttft_p50_ms'])} / {fmt(responses['ttft_p99_ms'])}",
                    "",
                    "",
                ]
            )
        total = f"{fmt(added['total_p50_ms'])} / {fmt(added['total_p99_ms'])}"
        rows.append(["overhead", f"added total p50 / p99, c={concurrency} (ms)", total, "", ""])
    long = result["long"]
    measure = (
        f"added time per token, {long['tokens']}-token zero-delay stream "
        f"(gateway CPU per token {fmt(long.get('gateway_cpu_per_token_ms'), 4)} ms)"
    )
    rows.append(["overhead", measure, f"{fmt(long['added_per_token_ms'], 4)} ms", "", ""])
    comparison = overhead.responses_vs_chat(result)
    if comparison is None:
        return rows
    measure = (
        f"Responses API: added time per token, same stream "
        f"(gateway CPU per token {fmt(long.get('responses_cpu_per_token_ms'), 4)} ms)"
    )
    value = f"{fmt(long['responses_added_per_token_ms'], 4)} ms"
    rows.append(["overhead", measure, value, "", ""])
    judged = comparison["goal"]
    at = judged["at_concurrency"]
    ttft_ratio = comparison["concurrency"][at]["added_ttft_p50_ratio"]
    stored = result["config"].get("responses_store", True)
    why = "sub-ms TTFT gaps are noise here" if judged["basis"] == "gateway CPU" else "no PID"
    measure = (
        f"Responses / chat: {judged['basis']} per request (c={at}) / per token "
        f"({'stored, the default' if stored else 'store: false'}; {why}; "
        f"added TTFT p50 at c={at}: {fmt(ttft_ratio)}x)"
    )
    value = f"{fmt(judged['per_request'])}x / {fmt(judged['per_token'])}x"
    ratio = overhead.GOAL_RESPONSES_RATIO
    met = judged["met"] if judged["met"] is not None else ""
    rows.append(["overhead", measure, value, f"≤ {ratio:g}x each", met])
    return rows


def throughput_rows(result: dict[str, Any]) -> list[Row]:
    scenarios = result["scenarios"]
    connections = result["config"]["connections"]
    floor = scenarios[throughput.FLOOR]["requests_per_s"]
    bare = scenarios.get("floor_bare", {}).get("requests_per_s")
    measure = (
        f"floor: GET /healthz of the gateway, c={connections} "
        f"(a bare quart-trio app: {fmt(bare, 0)}/s)"
    )
    rows: list[Row] = [["throughput", measure, f"{floor:.0f}/s", "", ""]]
    for name, data in scenarios.items():
        if name.startswith("floor"):
            continue
        goal = throughput.GOALS.get(name)
        note = "" if goal is not None else ", for reference"
        cost_ratio = data.get("cpu_cost_ratio")
        value = f"{data['requests_per_s']:.0f}/s ({data['ratio_to_floor']:.0%})"
        rows.append(
            [
                "throughput",
                f"{name} completions/s (ratio to the floor{note}; gateway CPU "
                f"{data['cpu'].get('gateway', 0):.0f} %, others {data['cpu']['others']:.0f} %; "
                f"ratio by CPU cost {fmt(cost_ratio, 2)})",
                value,
                f"≥ {goal:.0%}" if goal is not None else "",
                throughput.goal_met(name, data["ratio_to_floor"]),
            ]
        )
    return rows


def scale_rows(result: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for level in result["levels"]:
        n = level["streams"]
        at_goal = n == scale.GOAL_STREAMS
        value = (
            f"{fmt(level['rss_mb'], 1)} MB, {fmt(level['rss_per_stream_kb'], 1)} KB, "
            f"{level['streams_flowing']}/{n}"
        )
        goal = f"≤ {scale.GOAL_KB_PER_STREAM:g} KB per stream, all flowing"
        rows.append(
            [
                "scale",
                f"{n} open streams: RSS, per stream, flowing",
                value,
                goal if at_goal else "",
                scale.goal_met(level) if at_goal else "",
            ]
        )
    return rows


def workers_rows(result: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for name, per_count in result["scenarios"].items():
        one, two = per_count.get("1"), per_count.get("2")
        if one is None or two is None:
            continue
        cpu = two["cpu"]
        each = " / ".join(f"{cpu[k]:.0f}" for k in sorted(cpu) if k.startswith("worker"))
        measure = (
            f"{name}: completions/s, 1 → 2 workers (2 workers' CPU %: workers {each}, "
            f"upstream {cpu['upstream']:.0f}, load generator {cpu['loadgen']:.0f}, others "
            f"{cpu['others']:.0f}; CPU ceiling {fmt(two['ceiling_ratio'])}x at one worker's "
            f"costs, {fmt(two.get('own_ceiling_ratio'))}x at its own)"
        )
        value = (
            f"{one['requests_per_s']:.0f}/s → {two['requests_per_s']:.0f}/s "
            f"({fmt(two['ratio_to_one'])}x)"
        )
        met = workers.goal_met("2", two["ratio_to_one"])
        rows.append(["workers", measure, value, f"≥ {workers.GOAL_RATIO:g}x", met])
    return rows


def startup_rows(result: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    runs = result["config"]["runs"]
    for case, data in result["cases"].items():
        p50 = data["ready_p50_s"]
        rows.append(
            [
                "startup",
                f"{case}: process start → first 200 on /readyz, p50 / max s ({runs} runs)",
                f"{fmt(p50)} / {fmt(data['ready_max_s'])}",
                f"p50 ≤ {startup.GOAL_SECONDS:g} s",
                p50 is not None and p50 <= startup.GOAL_SECONDS,
            ]
        )
    imports = result["imports"]
    packages = ", ".join(f"{p['package']} {p['self_ms']:.0f}" for p in imports["top_packages"][:5])
    measure = f"import gateway.app: cumulative ms (own ms of the top packages: {packages})"
    rows.append(["startup", measure, f"{imports['total_ms']:.0f} ms", "", ""])
    return rows


SECTIONS: tuple[tuple[str, Callable[[dict[str, Any]], list[Row]]], ...] = (
    ("cancel", cancel_rows),
    ("overhead", overhead_rows),
    ("throughput", throughput_rows),
    ("scale", scale_rows),
    ("workers", workers_rows),
    ("startup", startup_rows),
)


def summary_rows(out: Path) -> list[Row]:
    """The rows of every benchmark whose JSON is in ``out``."""
    rows: list[Row] = []
    for name, rows_of in SECTIONS:
        result = load(out, name)
        if result:
            rows += rows_of(result)
    return rows
