"""The ``anthropic-messages`` provider: Anthropic's Messages API, always streamed.

``POST {baseUrl}/v1/messages``; ``baseUrl`` may be given with or without its ``/v1`` suffix
(``https://api.anthropic.com`` and ``https://api.anthropic.com/v1`` both work). Headers:
``x-api-key``, ``anthropic-version: 2023-06-01``, then the configured ``headers``.

The request is translated from the OpenAI shape by ``anthropic_request`` (see there); the event
stream by ``AnthropicStream``: text blocks become ``TextDelta``s, each ``tool_use`` block a tool
call numbered from 0 (``id`` and ``name`` first, then its ``input_json_delta`` fragments; a call
whose input never streamed gets ``{}`` so clients can always parse it), ``thinking`` blocks are
dropped. ``stop_reason``: ``end_turn``/``stop_sequence``/``pause_turn`` → ``stop``,
``max_tokens``/``model_context_window_exceeded`` → ``length``, ``tool_use`` → ``tool_calls``,
``refusal`` → ``content_filter``. Usage: prompt tokens are ``input_tokens`` plus cache reads and
writes (as OpenAI counts them), completion tokens the last ``output_tokens``. The end-of-stream
policy is the OpenAI provider's: a clean end without ``message_stop`` finishes normally if any
event came, and is a ``protocol`` error otherwise.
"""

from __future__ import annotations

import json

from gateway.providers.anthropic_request import anthropic_request
from gateway.providers.base import Emit, ModelRequest, ProviderError, token_count
from gateway.providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.upstream_errors import error_from_event
from gateway.providers.upstream_http import HttpProvider, UpstreamHttp, json_body, upstream_headers
from gateway.providers.upstream_sse import SSEEvent
from gateway.settings import ProviderSettings

__all__ = ["ANTHROPIC_VERSION", "AnthropicMessagesProvider", "AnthropicStream", "messages_url"]

ANTHROPIC_VERSION = "2023-06-01"

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def messages_url(base_url: str) -> str:
    """``{baseUrl}/v1/messages``, whether or not ``base_url`` already ends in ``/v1``."""
    base = base_url.rstrip("/")
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


class AnthropicStream:
    """Translates Anthropic stream events into provider events."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False  # saw message_stop
        self._seen_event = False
        self._input_tokens: int | None = None
        self._output_tokens: int | None = None
        self._stop_reason: str | None = None
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._tool_args_sent: set[int] = set()

    def feed(self, event: SSEEvent) -> list[ProviderEvent]:
        """Events for one SSE event. Raises ``ProviderError`` for ``error`` events and bad JSON."""
        if self.done:
            return []
        try:
            doc = json.loads(event.data)
        except ValueError:
            raise ProviderError(
                "protocol",
                f"Provider '{self.provider}' sent an invalid event: {event.data[:100]!r}",
                provider=self.provider,
            ) from None
        if not isinstance(doc, dict):
            raise ProviderError(
                "protocol",
                f"Provider '{self.provider}' sent a non-object event",
                provider=self.provider,
            )
        kind = doc.get("type") or event.event
        if kind == "error":
            raise error_from_event(self.provider, doc.get("error"))
        self._seen_event = True
        if kind == "message_start":
            message = doc.get("message")
            if isinstance(message, dict):
                self._usage(message.get("usage"))
        elif kind == "content_block_start":
            return self._block_start(token_count(doc.get("index")), doc.get("content_block"))
        elif kind == "content_block_delta":
            return self._block_delta(token_count(doc.get("index")), doc.get("delta"))
        elif kind == "content_block_stop":
            return self._block_stop(token_count(doc.get("index")))
        elif kind == "message_delta":
            delta = doc.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
            self._usage(doc.get("usage"))
        elif kind == "message_stop":
            self.done = True
        return []  # ping and event types added later

    def finish(self) -> list[ProviderEvent]:
        """``Usage`` (when reported) then ``Finish``, once the stream ended."""
        if not self._seen_event:
            raise ProviderError(
                "protocol",
                f"Provider '{self.provider}' ended its stream without any event",
                provider=self.provider,
            )
        events: list[ProviderEvent] = []
        if self._input_tokens is not None or self._output_tokens is not None:
            events.append(Usage(self._input_tokens or 0, self._output_tokens or 0))
        if self._stop_reason is None:
            reason = "tool_calls" if self._tools else "stop"
        else:
            reason = _STOP_REASONS.get(self._stop_reason, "stop")
        events.append(Finish(reason))
        return events

    def _block_start(self, index: int, block: object) -> list[ProviderEvent]:
        if not isinstance(block, dict):
            return []
        if block.get("type") == "text":
            text = block.get("text")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        if block.get("type") != "tool_use":
            return []  # thinking, redacted_thinking, server tools: not part of the event model
        tool = self._tools[index] = len(self._tools)
        events: list[ProviderEvent] = [
            ToolCallDelta(
                tool, "", id=str(block.get("id") or ""), name=str(block.get("name") or "")
            )
        ]
        given = block.get("input")
        if isinstance(given, dict) and given:  # streams send {} here, but a proxy may not
            self._tool_args_sent.add(tool)
            events.append(ToolCallDelta(tool, json.dumps(given)))
        return events

    def _block_delta(self, index: int, delta: object) -> list[ProviderEvent]:
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta":
            text = delta.get("text")
            return [TextDelta(text)] if isinstance(text, str) and text else []
        if delta.get("type") == "input_json_delta" and index in self._tools:
            fragment = delta.get("partial_json")
            if isinstance(fragment, str) and fragment:
                tool = self._tools[index]
                self._tool_args_sent.add(tool)
                return [ToolCallDelta(tool, fragment)]
        return []

    def _block_stop(self, index: int) -> list[ProviderEvent]:
        tool = self._tools.get(index)
        if tool is None or tool in self._tool_args_sent:
            return []
        self._tool_args_sent.add(tool)
        return [ToolCallDelta(tool, "{}")]

    def _usage(self, usage: object) -> None:
        if not isinstance(usage, dict):
            return
        if "input_tokens" in usage:
            self._input_tokens = (
                token_count(usage.get("input_tokens"))
                + token_count(usage.get("cache_creation_input_tokens"))
                + token_count(usage.get("cache_read_input_tokens"))
            )
        if "output_tokens" in usage:
            self._output_tokens = token_count(usage.get("output_tokens"))


class AnthropicMessagesProvider(HttpProvider):
    """A ``Provider`` for Anthropic's Messages API; one connection pool per instance."""

    def __init__(self, settings: ProviderSettings, *, http: UpstreamHttp | None = None) -> None:
        super().__init__(settings, http=http)
        self._url = messages_url(settings.base_url)
        self._headers = upstream_headers(
            settings,
            "text/event-stream",
            key_header="x-api-key",
            key_format="{}",
            fixed={"anthropic-version": ANTHROPIC_VERSION},
        )

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        """Stream ``request`` from Anthropic, emitting events in order, then one ``Finish``.

        Raises ``ProviderError`` (``bad_request`` when the conversation cannot be translated).
        On cancellation the upstream connection is closed before the cancellation propagates.
        """
        translator = AnthropicStream(self.id)
        async with self._http.open_stream(
            self._url,
            body=json_body(anthropic_request(request, self._settings)),
            headers=self._headers,
        ) as upstream:
            await upstream.relay_events(translator, emit)
        for event in translator.finish():
            await emit(event)
