"""Accumulating a run's events into one assistant reply. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.agents.events import Finish, RunEvent, RunFailed, TextDelta, ToolCallDelta, Usage
from gateway.errors import GatewayError
from gateway.types import ChatMessage, ToolCall


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Reply:
    """What the model has said so far. ``finish_reason`` is ``None`` until the model finished."""

    parts: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None
    error: GatewayError | None = None
    events: int = 0

    def add(self, event: RunEvent) -> None:
        self.events += 1
        if type(event) is TextDelta:
            self.parts.append(event.text)
        elif type(event) is ToolCallDelta:
            call = self.calls.get(event.index)
            if call is None:
                call = self.calls[event.index] = _PartialCall()
            if event.id is not None:
                call.id = event.id
            if event.name is not None:
                call.name = event.name
            if event.arguments:
                call.arguments.append(event.arguments)
        elif type(event) is Finish:
            self.finish_reason = event.reason
        elif type(event) is Usage:
            self.usage = event
        elif type(event) is RunFailed:
            self.error = event.error

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def has_output(self) -> bool:
        return bool(self.parts or self.calls)

    def tool_calls(self) -> list[ToolCall]:
        return [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.arguments)},
            }
            for _, call in sorted(self.calls.items())
        ]

    def message(self) -> ChatMessage:
        """The reply as an assistant message (content ``None`` when it is only tool calls)."""
        text = self.text
        message: ChatMessage = {
            "role": "assistant",
            "content": text if text or not self.calls else None,
        }
        if self.calls:
            message["tool_calls"] = self.tool_calls()
        return message
