"""A tiny run of every benchmark, so they cannot rot: seconds each, no thresholds.

Each starts its own gateway and fake upstream on loopback, as the real runs do, and must exit 0
and write its JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SMOKE = {
    "cancel": ["--aborts", "20", "--concurrency", "4"],
    "overhead": [
        "--concurrency", "1", "--rounds", "1", "--block-seconds", "0.3",
        "--long-tokens", "200", "--long-reps", "1",
    ],
    "throughput": [
        "--duration", "0.5", "--warmup", "0.2", "--connections", "4",
        "--loadgen", "python", "--processes", "1",
    ],
    "scale": [
        "--levels", "10", "--token-interval", "0.2", "--tokens", "20", "--window", "0.5",
        "--settle", "0.2", "--batch", "10", "--ramp-timeout", "20",
    ],
    "upstream_client": ["--quick"],
    "workers": [
        "--rounds", "1", "--duration", "0.5", "--warmup", "0.2", "--connections", "4",
        "--loadgen", "python", "--processes", "1",
    ],
    "startup": ["--runs", "1", "--import-runs", "1"],
    "compare": [
        "--base", str(ROOT), "--rounds", "1", "--duration", "0.5", "--warmup", "0.2",
        "--connections", "4", "--loadgen", "python", "--processes", "1", "--no-profile",
    ],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_benchmark_smoke(name: str, tmp_path: Path) -> None:
    module = [sys.executable, "-m", f"bench.{name}"]
    args = [*module, *SMOKE[name], "--no-plots", "--out", str(tmp_path)]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = list(tmp_path.glob("*.json"))
    assert results, f"{name} wrote no JSON"
    assert json.loads(results[0].read_text())


def test_pg_scale_smoke(tmp_path: Path) -> None:
    """``bench.pg_scale --quick`` (the driver comparison of ``bench.pg_driver`` included) with
    its own PostgreSQL cluster; its stateful requests must have reached both stores."""
    from tests.postgres import server_binaries

    if server_binaries() is None:
        pytest.skip("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    args = [sys.executable, "-m", "bench.pg_scale", "--quick", "--no-plots"]
    done = subprocess.run(
        [*args, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "pg_scale.json").read_text())
    stored = {
        (store, count): data["sessions_stored"]
        for store, per_count in result["scale"]["stateful"].items()
        for count, data in per_count.items()
    }
    assert stored and all(stored.values()), stored
