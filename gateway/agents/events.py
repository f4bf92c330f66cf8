"""Typed events of an agent run.

A run pushes these into a bounded trio memory channel; the SSE writer, the JSON collector and the
WebSocket sender each drain that channel. Providers emit the first four kinds; the run adds
``RunFailed`` when something goes wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from gateway.errors import GatewayError


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A fragment of the assistant's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call.

    The first delta of a call carries ``id`` and ``name`` (and usually empty ``arguments``);
    later deltas of the same ``index`` carry argument fragments only.
    """

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage as reported by the provider."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Finish:
    """The model stopped; ``reason``: ``stop``, ``length``, ``tool_calls``, ``content_filter``."""

    reason: str


@dataclass(frozen=True, slots=True)
class RunFailed:
    """The run failed; no further events follow."""

    error: GatewayError


ProviderEvent: TypeAlias = TextDelta | ToolCallDelta | Usage | Finish
RunEvent: TypeAlias = TextDelta | ToolCallDelta | Usage | Finish | RunFailed
