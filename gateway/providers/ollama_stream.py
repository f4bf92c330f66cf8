"""Translating Ollama ``/api/chat`` answer lines into provider events. Pure: no I/O.

Each NDJSON line is one object (a non-streamed answer is one such object, with ``done: true``):

- ``message.content`` → ``TextDelta``; ``message.thinking`` is dropped (the event model has no
  place for it);
- ``message.tool_calls`` → one complete tool call each: a single ``ToolCallDelta`` with ``id``
  (Ollama's own if it sent one, else ``call_<random>``), ``name`` and the JSON of ``arguments``,
  numbered from 0 in order of appearance;
- the ``done: true`` line ends the answer: ``done_reason`` ``length`` → ``length``, anything else
  → ``stop`` (``tool_calls`` when the answer called tools: Ollama says ``stop`` then too);
  ``prompt_eval_count`` / ``eval_count`` → ``Usage``. Lines after it are ignored;
- an ``error`` member → ``ProviderError`` (Ollama's errors are plain strings: ``upstream``).

End-of-stream policy, as for the other providers: a body that ends without its ``done`` line after
some lines finishes normally; a body without any line is a ``protocol`` error, and so is a line
that is not a JSON object.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.providers.base import protocol_error, token_count
from gateway.providers.chat_parts import new_call_id
from gateway.providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.upstream_errors import error_from_event

__all__ = ["OllamaStream"]


class OllamaStream:
    """Translates one Ollama answer, line by line, into provider events."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False  # saw the done line
        self._seen = False
        self._calls = 0
        self._usage: Usage | None = None
        self._finish: str | None = None

    def feed(self, text: str) -> list[ProviderEvent]:
        """Events for one NDJSON line. Raises ``ProviderError``."""
        if self.done:
            return []
        try:
            line = json.loads(text)
        except ValueError:
            raise protocol_error(
                self.provider, f"sent a line that is not JSON: {text[:100]!r}"
            ) from None
        return self.feed_value(line)

    def feed_value(self, line: Any) -> list[ProviderEvent]:
        """Events for one parsed line (or a whole non-streamed answer). Raises
        ``ProviderError``."""
        if self.done:
            return []
        if not isinstance(line, dict):
            raise protocol_error(self.provider, "sent a line that is not an object")
        if line.get("error"):
            raise error_from_event(self.provider, line["error"])
        self._seen = True
        events = self._message(line.get("message"))
        if line.get("done") is True:
            self.done = True
            self._finish = "length" if line.get("done_reason") == "length" else "stop"
            if "prompt_eval_count" in line or "eval_count" in line:
                self._usage = Usage(
                    token_count(line.get("prompt_eval_count")), token_count(line.get("eval_count"))
                )
        return events

    def finish(self) -> list[ProviderEvent]:
        """``Usage`` (when reported) then one ``Finish``, once the body ended."""
        if not self._seen:
            raise protocol_error(self.provider, "ended its stream without any data")
        events: list[ProviderEvent] = [] if self._usage is None else [self._usage]
        reason = self._finish or "stop"
        events.append(Finish("tool_calls" if reason == "stop" and self._calls else reason))
        return events

    def _message(self, message: object) -> list[ProviderEvent]:
        if not isinstance(message, dict):
            return []
        events: list[ProviderEvent] = []
        content = message.get("content")
        if isinstance(content, str) and content:
            events.append(TextDelta(content))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict):
                continue
            arguments = function.get("arguments")
            if not isinstance(arguments, str):
                arguments = json.dumps(
                    arguments if isinstance(arguments, dict) else {}, ensure_ascii=False
                )
            call_id = call.get("id")
            events.append(
                ToolCallDelta(
                    self._calls,
                    arguments or "{}",
                    id=call_id if isinstance(call_id, str) and call_id else new_call_id(),
                    name=str(function.get("name") or ""),
                )
            )
            self._calls += 1
        return events
