"""Translating Gemini ``streamGenerateContent`` answers into provider events. Pure: no I/O.

Each SSE event (``?alt=sse``) is one ``GenerateContentResponse``; a JSON answer is one of them or
an array of them (``feed_chunk`` takes each). Only candidate 0 is read:

- ``content.parts``: ``text`` → ``TextDelta`` (parts marked ``thought: true``, thought summaries,
  are dropped); ``functionCall`` → one complete tool call: a single ``ToolCallDelta`` with
  ``id`` (Gemini's own ``id`` if it sent one, else ``call_<random>``), ``name`` and the JSON of
  ``args``, numbered from 0 in order of appearance;
- ``finishReason``: ``STOP`` → ``stop``, or ``tool_calls`` when the answer called tools;
  ``MAX_TOKENS`` → ``length``; ``SAFETY``, ``RECITATION``, ``LANGUAGE``, ``BLOCKLIST``,
  ``PROHIBITED_CONTENT``, ``SPII``, ``IMAGE_SAFETY`` (and other blocking reasons) →
  ``content_filter``; anything else reads as ``STOP``. A prompt blocked by
  ``promptFeedback.blockReason`` finishes with ``content_filter``;
- ``usageMetadata`` (the last one wins) → ``Usage``: ``promptTokenCount``, and
  ``candidatesTokenCount`` plus ``thoughtsTokenCount`` (OpenAI counts reasoning as completion);
- ``{"error": {code, message, status}}`` → ``ProviderError`` (kind from ``code`` as an HTTP
  status, else from ``status``: ``RESOURCE_EXHAUSTED`` → rate_limited, ``INVALID_ARGUMENT`` →
  bad_request, ...).

Gemini's stream has no end marker: it ends with the body. A body with no event at all is a
``protocol`` error, and so is data that is not a JSON object.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.providers.base import ProviderError, protocol_error, token_count
from gateway.providers.chat_parts import new_call_id
from gateway.providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.upstream_errors import error_from_event
from gateway.providers.upstream_sse import SSEEvent

__all__ = ["GeminiStream", "gemini_error"]

_FILTERED = frozenset(
    {
        "SAFETY", "RECITATION", "LANGUAGE", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
        "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
    }
)  # fmt: skip
# Google's canonical status names, as the HTTP statuses they stand for.
_STATUS_CODES = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}  # fmt: skip


def gemini_error(provider: str, error: object) -> ProviderError:
    """The ``ProviderError`` for a Gemini ``error`` object (see the module docstring)."""
    if isinstance(error, dict) and not isinstance(error.get("code"), int):
        code = _STATUS_CODES.get(str(error.get("status")))
        if code is not None:
            error = {**error, "code": code}
    return error_from_event(provider, error)


class GeminiStream:
    """Translates one Gemini answer into provider events."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False  # Gemini sends no end marker: the body's end is the end
        self._seen = False
        self._calls = 0
        self._usage: dict[str, Any] | None = None  # the last usageMetadata
        self._finish: str | None = None

    def feed(self, event: SSEEvent) -> list[ProviderEvent]:
        """Events for one SSE event. Raises ``ProviderError``."""
        data = event.data.strip()
        if not data:
            return []
        try:
            document = json.loads(data)
        except ValueError:
            raise protocol_error(self.provider, f"sent an invalid event: {data[:100]!r}") from None
        return self.feed_chunk(document)

    def feed_chunk(self, chunk: Any) -> list[ProviderEvent]:
        """Events for one ``GenerateContentResponse``. Raises ``ProviderError``."""
        if not isinstance(chunk, dict):
            raise protocol_error(self.provider, "sent a chunk that is not an object")
        if chunk.get("error"):
            raise gemini_error(self.provider, chunk["error"])
        self._seen = True
        usage = chunk.get("usageMetadata")
        if isinstance(usage, dict):
            self._usage = usage  # read once, at the end: most chunks repeat it
        feedback = chunk.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            self._finish = "content_filter"
        candidates = chunk.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            return []
        candidate = candidates[0]
        if not isinstance(candidate, dict):
            return []
        events = self._parts(candidate.get("content"))
        reason = candidate.get("finishReason")
        if isinstance(reason, str) and reason:
            if reason == "MAX_TOKENS":
                self._finish = "length"
            elif reason in _FILTERED:
                self._finish = "content_filter"
            else:
                self._finish = "stop"
        return events

    def finish(self) -> list[ProviderEvent]:
        """``Usage`` (when reported) then one ``Finish``, once the body ended."""
        if not self._seen:
            raise protocol_error(self.provider, "ended its stream without any data")
        events: list[ProviderEvent] = []
        if self._usage is not None:
            usage = self._usage
            completion = token_count(usage.get("candidatesTokenCount"))
            completion += token_count(usage.get("thoughtsTokenCount"))
            events.append(Usage(token_count(usage.get("promptTokenCount")), completion))
        reason = self._finish or "stop"
        if reason == "stop" and self._calls:
            reason = "tool_calls"
        events.append(Finish(reason))
        return events

    def _parts(self, content: object) -> list[ProviderEvent]:
        parts = content.get("parts") if isinstance(content, dict) else None
        events: list[ProviderEvent] = []
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict) or part.get("thought") is True:
                continue
            text = part.get("text")
            if isinstance(text, str) and text:
                events.append(TextDelta(text))
            call = part.get("functionCall")
            if isinstance(call, dict):
                args = call.get("args")
                call_id = call.get("id")
                events.append(
                    ToolCallDelta(
                        self._calls,
                        json.dumps(args if isinstance(args, dict) else {}, ensure_ascii=False),
                        id=call_id if isinstance(call_id, str) and call_id else new_call_id(),
                        name=str(call.get("name") or ""),
                    )
                )
                self._calls += 1
        return events
