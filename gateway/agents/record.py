"""What one run did, for logs and metrics, and the observer seam that receives it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

import trio

from gateway.agents.events import Usage
from gateway.errors import GatewayError

RunPhase = Literal["queued", "waiting", "streaming"]


@dataclass(slots=True, eq=False)
class RunRecord:
    """One run as it goes: ``phase`` is ``queued`` (waiting for its lane or a slot), ``waiting``
    (running, no output yet) or ``streaming``. ``outcome`` is set when it ends: ``complete``,
    ``cancelled:<phase>`` or ``error:<kind>``."""

    run_id: str
    session_key: str
    agent_id: str
    queued_at: float = field(default_factory=time.monotonic)
    phase: RunPhase = "queued"
    provider: str | None = None
    model: str | None = None
    started_at: float | None = None
    first_token_at: float | None = None
    ended_at: float | None = None
    usage: Usage | None = None
    outcome: str = ""
    stream: bool = False
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    killed: bool = False
    abort_error: GatewayError | None = None

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

    def log_fields(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "run_id": self.run_id,
            "agent": self.agent_id,
            "model": f"{self.provider}/{self.model}" if self.provider else None,
            "stream": self.stream,
            "outcome": self.outcome,
            "ttft_ms": _ms(self.ttft),
            "run_ms": _ms(self.duration),
        }
        if self.usage is not None:
            fields["prompt_tokens"] = self.usage.prompt_tokens
            fields["completion_tokens"] = self.usage.completion_tokens
        return fields


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class RunObserver(Protocol):
    """Told about every run's milestones (metrics). Must not block or raise."""

    def run_queued(self, record: RunRecord) -> None: ...

    def run_started(self, record: RunRecord) -> None: ...

    def first_token(self, record: RunRecord) -> None: ...

    def upstream_error(self, provider: str, kind: str) -> None: ...

    def run_ended(self, record: RunRecord) -> None: ...


class NullObserver:
    def run_queued(self, record: RunRecord) -> None:
        return None

    def run_started(self, record: RunRecord) -> None:
        return None

    def first_token(self, record: RunRecord) -> None:
        return None

    def upstream_error(self, provider: str, kind: str) -> None:
        return None

    def run_ended(self, record: RunRecord) -> None:
        return None
