"""One agent run as its callers see it: the ``Run`` handle.

``AgentRuntime.open_run`` starts a run in a nursery its caller owns (an HTTP request's, a
WebSocket connection's), which the run never outlives, and returns its handle. The handle is
the one way to follow a run and to stop it, for every caller (HTTP, WebSocket, kills, shutdown,
logs, metrics):

- ``events``: the receive side of the run's bounded channel. The consumer drains it; closing it
  aborts the run (``CLIENT_GONE``), and so does the cancellation of the owning nursery;
- ``abort(reason)``: records a typed ``AbortReason`` (the first one wins) and cancels the run's
  one cancel scope, which covers everything it does: waiting for admission, the model call, the
  writes to the channel. A consumer still there then gets a last ``RunFailed`` carrying the
  reason (``KILLED``, ``SHUTDOWN``);
- ``phase``, timings, usage, provider and model as it goes; ``outcome`` (typed) once it ended.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from gateway.agents.events import AbortReason, RunEvent, Usage
from gateway.agents.routing import SessionTarget
from gateway.settings import AgentSettings, ModelChoice
from gateway.types import ChatMessage

# Events a run may get ahead of its consumer before it waits (backpressure toward the upstream).
CHANNEL_SIZE = 64


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run: ``messages`` are the client's (system text already split off into ``system``)."""

    run_id: str
    agent: AgentSettings
    session: SessionTarget
    messages: Sequence[ChatMessage]
    system: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    model: ModelChoice | None = None
    timeout_seconds: float | None = None
    # A consumer that takes no event for this long is stalled (a client that stopped reading):
    # the run is aborted so its upstream does not stay open. ``None``: wait forever.
    send_timeout: float | None = None
    stream: bool = False
    # The conversation so far, given by the caller (the chain of a previous response): then the
    # stored transcript is not read, and a stateful run records ``messages`` and its reply.
    context: Sequence[ChatMessage] | None = None
    # The message channel the client named; a stateful run records it with its turn.
    channel: str | None = None


class Phase(enum.Enum):
    QUEUED = "queued"  # waiting for its session lane or a run slot
    WAITING = "waiting"  # admitted, no output yet
    STREAMING = "streaming"  # the model has said something


class Ending(enum.Enum):
    COMPLETE = "complete"
    ABORTED = "aborted"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended: in which phase, and why (``reason`` for an abort or a timeout,
    ``error`` the failure's code or kind)."""

    ending: Ending
    phase: Phase
    reason: AbortReason | None = None
    error: str | None = None

    def log_fields(self) -> dict[str, object]:
        fields: dict[str, object] = {"outcome": self.ending.value}
        if self.ending is not Ending.COMPLETE:
            fields["phase"] = self.phase.value
        if self.reason is not None:
            fields["abort_reason"] = self.reason.value
        if self.error is not None:
            fields["error"] = self.error
        return fields


class Run:
    """The handle of one run (see the module docstring). Only the runtime writes its fields."""

    __slots__ = (
        "_scope",
        "_send",
        "abort_reason",
        "ended_at",
        "events",
        "first_token_at",
        "model",
        "outcome",
        "phase",
        "provider",
        "queued_at",
        "request",
        "started_at",
        "usage",
    )

    def __init__(self, request: RunRequest) -> None:
        self.request = request
        self._send, self.events = trio.open_memory_channel[RunEvent](CHANNEL_SIZE)
        self._scope = trio.CancelScope()
        self.abort_reason: AbortReason | None = None
        self.outcome: Outcome | None = None
        self.phase = Phase.QUEUED
        self.provider: str | None = None
        self.model: str | None = None
        self.queued_at = time.monotonic()
        self.started_at: float | None = None
        self.first_token_at: float | None = None
        self.ended_at: float | None = None
        self.usage: Usage | None = None

    @property
    def id(self) -> str:
        return self.request.run_id

    @property
    def session_key(self) -> str:
        return self.request.session.key

    @property
    def stateful(self) -> bool:
        return self.request.session.stateful

    @property
    def agent_id(self) -> str:
        return self.request.agent.id

    def abort(self, reason: AbortReason) -> bool:
        """Stop the run for ``reason`` (the first reason given is the one kept); returns whether
        the run was still going. Never waits: the run ends at its next checkpoint."""
        if self.outcome is not None:
            return False
        if self.abort_reason is None:
            self.abort_reason = reason
        self._scope.cancel()
        return True

    @property
    def ttft(self) -> float | None:
        """Seconds from arrival to the first token."""
        if self.first_token_at is None:
            return None
        return self.first_token_at - self.queued_at

    @property
    def duration(self) -> float | None:
        if self.ended_at is None:
            return None
        return self.ended_at - self.queued_at

    @property
    def model_ref(self) -> str | None:
        return f"{self.provider}/{self.model}" if self.provider else None

    def log_fields(self) -> dict[str, object]:
        """What the access log line says about this run."""
        fields: dict[str, object] = {
            "run_id": self.id,
            "agent": self.agent_id,
            "model": self.model_ref,
            "stream": self.request.stream,
            "ttft_ms": _ms(self.ttft),
            "run_ms": _ms(self.duration),
        }
        if self.outcome is not None:
            fields.update(self.outcome.log_fields())
        if self.usage is not None:
            fields["prompt_tokens"] = self.usage.prompt_tokens
            fields["completion_tokens"] = self.usage.completion_tokens
        return fields


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
