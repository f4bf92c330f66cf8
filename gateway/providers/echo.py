"""The built-in ``echo`` provider: no network, streams the last user message back word by word.

It is the model of every agent that names none, so a fresh install answers offline.
"""

from __future__ import annotations

import re

import trio

from gateway.providers.base import Emit, ModelRequest, max_output_tokens
from gateway.providers.events import Finish, TextDelta, Usage
from gateway.types import ChatMessage

_WORDS = re.compile(r"\S+\s*|\s+")


def message_text(message: ChatMessage) -> str:
    """The text of a message: its string content, or its text parts joined."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", ""))
            for part in content
            if part.get("type") in ("text", "input_text")
        )
    return ""


def _count_tokens(text: str) -> int:
    # A rough, deterministic stand-in for a tokenizer: one token per word.
    return len(text.split())


class EchoProvider:
    """Echoes the last user (or tool) message; each word is one ``TextDelta``."""

    def __init__(self, provider_id: str = "echo", *, delay: float = 0.0) -> None:
        self._id = provider_id
        self._delay = delay

    @property
    def id(self) -> str:
        return self._id

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        text = ""
        for message in reversed(request.messages):
            if message["role"] in ("user", "tool"):
                text = message_text(message)
                break
        prompt_tokens = sum(_count_tokens(message_text(m)) for m in request.messages)
        prompt_tokens += _count_tokens(request.system or "")
        limit = max_output_tokens(request.params)
        words = _WORDS.findall(text)
        finish = "stop"
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
        for word in words:
            await emit(TextDelta(word))
            # A checkpoint per word, so even a zero-delay echo can be cancelled mid-stream.
            await trio.sleep(self._delay)
        await emit(Usage(prompt_tokens=prompt_tokens, completion_tokens=len(words)))
        await emit(Finish(finish))

    async def aclose(self) -> None:
        return None
