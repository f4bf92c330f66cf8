"""``bench.pg_scale``'s tables and plot, from its result document."""

from __future__ import annotations

import argparse
from typing import Any

from bench import pg_driver
from bench.common import pyplot, table

COLORS = {
    "sqlite": "tab:blue",
    "postgres": "tab:orange",
    "local": "tab:green",
    "job_queue": "tab:orange",
    "to_thread_pool": "tab:purple",
    "floor": "tab:gray",
}
STYLES = {"stateless": "--", "stateful": "-"}


def load_rows(result: dict[str, Any], level: str) -> list[list[Any]]:
    """The rows of ``level`` (``scale`` or ``single``)."""
    rows = []
    for mode, per_store in result[level].items():
        for store, per_count in per_store.items():
            for count, data in per_count.items():
                cpu = data["cpu"]
                gateways = sum(v for k, v in cpu.items() if k.startswith("gateway"))
                rows.append(
                    [
                        mode,
                        store,
                        count,
                        data["completions_per_s"],
                        data.get("ratio_to_one"),
                        data["ttft_ms"]["p50"],
                        data["added_ttft_p50_ms"],
                        data["added_ttft_p99_ms"],
                        data["gateway_cpu_ms_per_completion"],
                        data["postgres_cpu_ms_per_completion"],
                        f"{gateways:.0f} / {cpu['upstream']:.0f} / {cpu['postgres']:.0f} / "
                        f"{cpu['bench']:.0f} / {cpu['others']:.0f}",
                        data.get("sessions_stored"),
                        data["failures"],
                        data.get("log_errors"),
                    ]
                )
    return rows


def admission_rows(result: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for kind, data in result["admission"]["results"].items():
        for case in ("stateful", "stateless"):
            d = data[case]
            rows.append(
                [
                    kind,
                    case,
                    d["enter"]["p50_ms"],
                    d["enter"]["p99_ms"],
                    d["leave"]["p50_ms"],
                    d["leave"]["p99_ms"],
                    d["total"]["p50_ms"],
                    d["total"]["p99_ms"],
                    d["cpu_us_per_run"],
                    d.get("server_cpu_us_per_run"),
                ]
            )
        handover = data["handover"]
        rows.append([kind, "handover", None, None, None, None, handover["p50_ms"]])
        rows[-1] += [handover["p99_ms"], None, None]
    return rows


def print_report(result: dict[str, Any]) -> None:
    config, direct = result["config"], result["direct"]
    headers = ["mode", "store", "N", "completions/s", "ratio to N=1", "TTFT p50 ms"]
    headers += ["added TTFT p50 ms", "added TTFT p99 ms", "gateway CPU ms/compl."]
    headers += ["postgres CPU ms/compl."]
    headers += ["CPU %: gateways / upstream / postgres / clients / others"]
    headers += ["sessions stored", "failures", "log errors"]
    for level, title in (
        ("single", "One client, one process"),
        ("scale", f"{config['concurrency']} clients over N processes"),
    ):
        print()
        print(
            f"{title}: streaming, 8 tokens, zero delay; straight to the fake upstream: TTFT "
            f"p50 {direct[level]['ttft_ms']['p50']:.2f} ms, p99 "
            f"{direct[level]['ttft_ms']['p99']:.2f} ms"
        )
        print(table(headers, load_rows(result, level)))
    errors = sum(
        data.get("log_errors") or 0
        for data in result["scale"]["stateless"].values()
        for data in data.values()
    )
    if errors:
        print(f"note: {errors} ERROR lines in the gateways' logs (logs/pg_scale-*-gateway.log)")
    print()
    print("Admission per run, in process (ms; CPU in µs per run)")
    headers = ["admission", "case", "enter p50", "enter p99", "leave p50", "leave p99"]
    headers += ["total p50", "total p99", "CPU µs/run (process)", "server CPU µs/run"]
    print(table(headers, admission_rows(result)))
    print()
    print(f"Driver per query ({result['driver']['config']['connections']} connections each)")
    print(pg_driver.report(result["driver"]))


def plot(args: argparse.Namespace, result: dict[str, Any]) -> list[str]:
    plt = pyplot(args)
    if plt is None:
        return []
    fig, axes = plt.subplot_mosaic(
        [["rate", "ttft", "cpu"], ["admission", "driver", "driver"]], figsize=(16, 9.5)
    )
    counts = [int(c) for c in result["config"]["processes"]]
    for ax, label, value in (
        (axes["rate"], "completions/s", lambda d: d["completions_per_s"]),
        (axes["ttft"], "added TTFT p50, ms", lambda d: d["added_ttft_p50_ms"]),
        (
            axes["cpu"],
            "CPU ms per completion",
            lambda d: d["gateway_cpu_ms_per_completion"] + d["postgres_cpu_ms_per_completion"],
        ),
    ):
        for mode, per_store in result["scale"].items():
            for store, per_count in per_store.items():
                ys = [value(per_count[str(c)]) for c in counts]
                ax.plot(
                    counts, ys, STYLES[mode], marker="o", color=COLORS[store],
                    label=f"{store}, {mode}",
                )  # fmt: skip
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_xlabel("gateway processes")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    for mode, per_store in result["single"].items():
        for store, per_count in per_store.items():
            axes["ttft"].plot(
                [1], [per_count["1"]["added_ttft_p50_ms"]], "*", markersize=11,
                color=COLORS[store], markerfacecolor="none" if mode == "stateless" else None,
                label=f"{store}, {mode}, 1 client",
            )  # fmt: skip
    axes["ttft"].legend(fontsize=7)
    axes["rate"].set_title(f"Completions/s, {result['config']['concurrency']} streaming clients")
    axes["ttft"].set_title("TTFT added over the fake upstream alone")
    axes["cpu"].set_title("CPU per completion: gateways + PostgreSQL server")
    _bars(
        axes["admission"],
        lambda label: label.split("\n")[0],
        {
            f"{kind}\n{case}": (d[case]["total"]["p50_ms"], d[case]["total"]["p99_ms"])
            if case != "handover"
            else (d[case]["p50_ms"], d[case]["p99_ms"])
            for kind, d in result["admission"]["results"].items()
            for case in ("stateful", "stateless", "handover")
        },
    )
    axes["admission"].set_title("Admission per run (handover: release → admitted)")
    drivers = result["driver"]["results"]
    _bars(
        axes["driver"],
        lambda label: label.split("\n")[1],
        {
            f"{query} c={c}\n{which}": (d["p50_ms"], d["p99_ms"])
            for query, per_c in drivers.items()
            for c, per_driver in per_c.items()
            for which, d in per_driver.items()
        },
    )
    axes["driver"].set_title("Driver: latency per query")
    fig.suptitle(f"PostgreSQL store vs SQLite ({result['environment']['cpus']} shared cores)")
    fig.tight_layout()
    path = args.out / "pg_scale.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [str(path)]


def _bars(ax: Any, kind: Any, values: dict[str, tuple[float, float]]) -> None:
    """p50 as bars (coloured by ``kind(label)``), p99 as dots, ms on a log scale."""
    labels = list(values)
    xs = range(len(labels))
    colors = [COLORS[kind(label)] for label in labels]
    ax.bar(xs, [values[k][0] for k in labels], color=colors, label="p50")
    ax.plot(xs, [values[k][1] for k in labels], "o", color="tab:red", label="p99")
    ax.set_yscale("log")
    ax.set_xticks(list(xs), labels, fontsize=6, rotation=60, ha="right")
    ax.set_ylabel("ms (log)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
