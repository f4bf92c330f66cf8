"""The observer seam: what is told about every run's milestones (metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.agents.run import Run


class RunObserver(Protocol):
    """Told about every run's milestones. Must not block or raise."""

    def run_queued(self, run: Run) -> None: ...

    def run_started(self, run: Run) -> None: ...

    def first_token(self, run: Run) -> None: ...

    def upstream_error(self, provider: str, kind: str) -> None: ...

    def run_ended(self, run: Run) -> None: ...


class NullObserver:
    def run_queued(self, run: Run) -> None:
        return None

    def run_started(self, run: Run) -> None:
        return None

    def first_token(self, run: Run) -> None:
        return None

    def upstream_error(self, provider: str, kind: str) -> None:
        return None

    def run_ended(self, run: Run) -> None:
        return None
