"""Typed events a model provider emits, in order, for one completion.

The run pushes them (and ``RunFailed``, see ``gateway.agents.events``) into a bounded channel;
the SSE writer, the JSON collector and the WebSocket sender each drain it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from gateway.types import UsageDict


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

    def as_dict(self) -> UsageDict:
        """The OpenAI Chat Completions ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class Finish:
    """The model stopped; ``reason``: ``stop``, ``length``, ``tool_calls``, ``content_filter``."""

    reason: str


ProviderEvent: TypeAlias = TextDelta | ToolCallDelta | Usage | Finish
