"""What a ``bench.overhead`` run means: its goals, the Responses / chat comparison, the printed
report and the plot. Pure functions of the result document (the JSON), so ``bench._summary``
judges a saved run with the same code as the run itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench._overhead_measure import (
    ADDED,
    ADDED_PER_TOKEN,
    CPU_PER_REQUEST,
    CPU_PER_TOKEN,
    GATEWAYED,
    PATHS,
)
from bench.common import fmt, pyplot, table

# The goals: added time to first token of a chat completion, p50, one client at a time; and the
# Responses API costing the gateway at most 10 % more than chat completions, judged on the
# gateway's CPU per request (c = 1) and per token, which move far less between blocks than
# sub-millisecond latencies on shared cores. The rest is reported without a goal.
GOAL_TTFT_MS = 1.0
GOAL_RESPONSES_RATIO = 1.10
LABELS = {"direct": "direct", "gateway": "chat", "responses": "responses"}


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None or base <= 0 else value / base


def responses_vs_chat(result: dict[str, Any]) -> dict[str, Any] | None:
    """Responses / chat ratios of what the gateway adds, per concurrency and per token, and the
    goal's verdict (``met`` is ``None`` when neither the CPU nor the times are known); ``None``
    for a result without the Responses path (an earlier run)."""
    short = result["short"]
    if not all("responses_added" in entry for entry in short.values()):
        return None
    per_c: dict[str, dict[str, float | None]] = {}
    for concurrency, entry in short.items():
        chat, responses = entry["added"], entry["responses_added"]
        per_c[concurrency] = {
            "added_ttft_p50_ratio": _ratio(responses["ttft_p50_ms"], chat["ttft_p50_ms"]),
            "added_ttft_p99_ratio": _ratio(responses["ttft_p99_ms"], chat["ttft_p99_ms"]),
            "cpu_per_request_ratio": _ratio(
                entry.get("responses_cpu_ms_per_request"), entry.get("gateway_cpu_ms_per_request")
            ),
        }
    long = result["long"]
    out: dict[str, Any] = {
        "concurrency": per_c,
        "added_per_token_ratio": _ratio(
            long.get("responses_added_per_token_ms"), long["added_per_token_ms"]
        ),
        "cpu_per_token_ratio": _ratio(
            long.get("responses_cpu_per_token_ms"), long.get("gateway_cpu_per_token_ms")
        ),
    }
    at = min(per_c, key=int)
    basis = "gateway CPU"
    per_request, per_token = per_c[at]["cpu_per_request_ratio"], out["cpu_per_token_ratio"]
    if "gateway_cpu_per_token_ms" not in long:  # its PID unknown (``--target``): times only
        basis = "added time"
        per_request, per_token = per_c[at]["added_ttft_p50_ratio"], out["added_per_token_ratio"]
    met = None
    if per_request is not None and per_token is not None:
        met = max(per_request, per_token) <= GOAL_RESPONSES_RATIO
    out["goal"] = {
        "basis": basis,
        "at_concurrency": at,
        "per_request": per_request,
        "per_token": per_token,
        "met": met,
    }
    return out


def print_report(result: dict[str, Any]) -> None:
    """Print a run's tables: latency per path and c, Responses vs chat, the goals."""
    config = result["config"]
    rows = []
    for concurrency, entry in result["short"].items():
        for path in PATHS:
            data = entry[path]
            added = entry.get(ADDED.get(path, ""), {})
            rows.append(
                [
                    concurrency,
                    LABELS[path],
                    data["ttft_ms"]["p50"],
                    data["ttft_ms"]["p99"],
                    added.get("ttft_p50_ms"),
                    added.get("ttft_p99_ms"),
                    added.get("total_p50_ms"),
                    added.get("total_p99_ms"),
                    data["requests_per_s"],
                    entry.get(CPU_PER_REQUEST.get(path, "")),
                    data["ttft_ms"]["n"],
                    data["failures"],
                ]
            )
    print()
    print(
        f"Latency, ms: {config['tokens']}-token zero-delay streams, closed loop; added = the "
        "path's percentile minus direct's"
    )
    headers = ["c", "path", "TTFT p50", "TTFT p99", "added TTFT p50", "added TTFT p99"]
    headers += ["added total p50", "added total p99", "req/s", "gw CPU ms/req", "n", "failures"]
    print(table(headers, rows))
    comparison = responses_vs_chat(result)
    assert comparison is not None, "a run of this version measures the Responses path"
    long = result["long"]
    rows = []
    for concurrency, entry in result["short"].items():
        ratios = comparison["concurrency"][concurrency]
        rows.append(
            [
                f"added TTFT p50, c={concurrency} (ms)",
                entry["added"]["ttft_p50_ms"],
                entry["responses_added"]["ttft_p50_ms"],
                ratios.get("added_ttft_p50_ratio"),
            ]
        )
        rows.append(
            [
                f"gateway CPU per request, c={concurrency} (ms)",
                entry.get("gateway_cpu_ms_per_request"),
                entry.get("responses_cpu_ms_per_request"),
                ratios.get("cpu_per_request_ratio"),
            ]
        )
    for label, keys, ratio in (
        ("added time per token (µs)", ADDED_PER_TOKEN, "added_per_token_ratio"),
        ("gateway CPU per token (µs)", CPU_PER_TOKEN, "cpu_per_token_ratio"),
    ):
        values = [long.get(keys[p]) for p in GATEWAYED]
        micro = [None if v is None else v * 1000 for v in values]
        rows.append([label, *micro, comparison[ratio]])
    rows.append(
        [
            "added total, non-streaming, c=1 p50 (ms)",
            result["json"]["added"]["total_p50_ms"],
            result["json"]["responses_added"]["total_p50_ms"],
            None,
        ]
    )
    print()
    print(f"Responses vs chat completions ({long['tokens']}-token stream for the per-token rows)")
    print(table(["measure", "chat", "responses", "responses / chat"], rows))
    print()
    print(table(["measure", "value", "goal", "met"], goal_rows(result)))


def goal_rows(result: dict[str, Any]) -> list[list[Any]]:
    """The goals' rows (``measure, value, goal, met``) of the printed report."""
    long = result["long"]
    ttft_c1 = result["short"].get("1", {}).get("added", {}).get("ttft_p50_ms")
    rows: list[list[Any]] = [
        [
            "added TTFT p50 at c=1 (chat)",
            fmt(ttft_c1, 3) + " ms",
            f"<= {GOAL_TTFT_MS} ms",
            ttft_c1 is not None and ttft_c1 <= GOAL_TTFT_MS,
        ]
    ]
    comparison = responses_vs_chat(result)
    if comparison:
        goal = comparison["goal"]
        rows.append(
            [
                f"responses / chat, {goal['basis']} per request (c={goal['at_concurrency']}) "
                "/ per token",
                f"{fmt(goal['per_request'])}x / {fmt(goal['per_token'])}x",
                f"<= {GOAL_RESPONSES_RATIO:g}x each",
                goal["met"] if goal["met"] is not None else "",
            ]
        )
    rows.append(
        [
            "tokens/s direct / chat / responses",
            " / ".join(fmt(long.get(f"{p}_tokens_per_s"), 0) for p in PATHS),
            "",
            "",
        ]
    )
    return rows


def plot(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    """Write ``overhead.png`` (TTFT per path, added TTFT per gatewayed path, against c) to
    ``args.out``; returns the paths written (none without matplotlib or with ``--no-plots``)."""
    plt = pyplot(args)
    if plt is None:
        return []
    levels = [int(c) for c in result["short"]]
    colors = {"direct": "tab:blue", "gateway": "tab:orange", "responses": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax = axes[0]
    for path in PATHS:
        for stat, style in (("p50", "-"), ("p99", "--")):
            ys = [result["short"][str(c)][path]["ttft_ms"][stat] for c in levels]
            label = f"{LABELS[path]} {stat}"
            ax.plot(levels, ys, style, marker="o", color=colors[path], label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("time to first token, ms (log)")
    ax.set_title("TTFT: direct, chat and responses through the gateway")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1]
    for path in GATEWAYED:
        for stat, style in (("p50", "-"), ("p99", "--")):
            ys = [result["short"][str(c)][ADDED[path]][f"ttft_{stat}_ms"] for c in levels]
            label = f"{LABELS[path]}: added TTFT {stat}"
            ax.plot(levels, ys, style, marker="o", color=colors[path], label=label)
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
