"""Prometheus metrics (``prometheus-client``), served at ``GET /metrics`` when enabled.

Each app has its own ``CollectorRegistry``. With several worker processes, set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by the workers before they start
(``gateway serve --workers N`` does it for you): every worker then writes its samples there and
``/metrics`` on any worker reports the sum over all of them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from gateway.agents.run import Ending, Run

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_ROUTES = (
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/models",
    "/health",
    "/healthz",
    "/ready",
    "/readyz",
    "/metrics",
)


def route_label(path: str) -> str:
    """A bounded label for a request path (no ids, no session keys)."""
    if path in _ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{id}"
    if path.startswith("/v1/responses/"):
        if path.endswith("/input_items"):
            return "/v1/responses/{id}/input_items"
        return "/v1/responses/{id}"
    if path.startswith("/sessions/"):
        if path.endswith("/history"):
            return "/sessions/{key}/history"
        if path.endswith("/kill"):
            return "/sessions/{key}/kill"
    return "other"


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The gateway's instruments; also a ``RunObserver``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_http_requests", "HTTP requests by route and status",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.active = Gauge(
            "gateway_runs_active", "Agent runs in progress (queued or running)",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.queued = Gauge(
            "gateway_runs_queued", "Agent runs waiting for their session lane or a run slot",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.ttft = Histogram(
            "gateway_run_ttft_seconds", "Time from arrival to the first token",
            ["agent", "model"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "gateway_run_duration_seconds", "Time from arrival to the end of the run",
            ["agent", "model", "outcome"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.cancellations = Counter(
            "gateway_run_cancellations", "Runs aborted, by the phase they were in and why",
            ["phase", "reason"], registry=r,
        )  # fmt: skip
        self.upstream_errors = Counter(
            "gateway_upstream_errors", "Provider failures by provider and kind",
            ["provider", "kind"], registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "gateway_tokens", "Tokens reported by providers", ["direction", "agent", "model"],
            registry=r,
        )  # fmt: skip

    # -- RunObserver -------------------------------------------------------------------------

    def run_queued(self, run: Run) -> None:
        self.active.inc()
        self.queued.inc()

    def run_started(self, run: Run) -> None:
        self.queued.dec()

    def first_token(self, run: Run) -> None:
        ttft = run.ttft
        if ttft is not None:
            self.ttft.labels(run.agent_id, run.model_ref or "none").observe(ttft)

    def upstream_error(self, provider: str, kind: str) -> None:
        self.upstream_errors.labels(provider, kind).inc()

    def run_ended(self, run: Run) -> None:
        self.active.dec()
        if run.started_at is None:
            self.queued.dec()
        outcome = run.outcome
        assert outcome is not None
        model = run.model_ref or "none"
        if run.duration is not None:
            self.duration.labels(run.agent_id, model, outcome.ending.value).observe(run.duration)
        if outcome.ending is Ending.ABORTED:
            reason = outcome.reason.value if outcome.reason is not None else "unknown"
            self.cancellations.labels(outcome.phase.value, reason).inc()
        if run.usage is not None:
            self.tokens.labels("in", run.agent_id, model).inc(run.usage.prompt_tokens)
            self.tokens.labels("out", run.agent_id, model).inc(run.usage.completion_tokens)

    # -- HTTP --------------------------------------------------------------------------------

    def request_done(self, path: str, method: str, status: int | str) -> None:
        self.requests.labels(route_label(path), method, str(status)).inc()

    def render(self) -> bytes:
        """The text exposition: this process's, or every worker's in multiprocess mode."""
        if multiprocess_enabled():
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
