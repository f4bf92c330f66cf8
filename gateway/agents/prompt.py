"""What the model sees. Pure.

The structure of the conversation is kept (roles, ``tool_calls``, ``tool_call_id``), never
flattened into one text. Stateless runs send the client's conversation as is; stateful runs send
the stored transcript plus the new turn: the request's messages after its last assistant message,
so a client that resends its whole history does not duplicate it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.types import ChatMessage


def system_prompt(agent_prompt: str | None, client_system: str | None) -> str | None:
    """The agent's own prompt, then the client's system text (appended, never replacing it)."""
    parts = [p for p in (agent_prompt, client_system) if p and p.strip()]
    return "\n\n".join(parts) or None


def new_turn(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    """The messages after the last assistant message (all of them when there is none)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "assistant":
            return list(messages[i + 1 :])
    return list(messages)


@dataclass(frozen=True, slots=True)
class Prompt:
    """``messages`` go to the model; ``turn`` is what a stateful run appends to its transcript."""

    messages: list[ChatMessage]
    turn: list[ChatMessage]


def assemble(
    request_messages: Sequence[ChatMessage],
    history: Sequence[ChatMessage] | None,
) -> Prompt:
    """The prompt of a run: ``history`` is the stored transcript (``None`` for a stateless run)."""
    if history is None:
        return Prompt(list(request_messages), [])
    # A session with nothing stored yet adopts the client's whole conversation, so a client
    # that brings its own history into a new session does not lose it.
    turn = new_turn(request_messages) if history else list(request_messages)
    return Prompt([*history, *turn], turn)
