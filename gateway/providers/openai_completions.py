"""The ``openai-completions`` provider: any OpenAI-compatible Chat Completions upstream.

``POST {baseUrl}/chat/completions`` (``baseUrl`` usually ends in ``/v1``). The upstream is always
asked to stream, with ``stream_options.include_usage``, whatever the client asked for: one code
path, early failure detection and prompt cancellation. Messages go through in the OpenAI shape
(``tool_calls``, ``tool_call_id``, image parts); ``request.system`` becomes a leading system
message; every key of ``request.params`` is forwarded as is (the caller validated them).

Translation decisions (``OpenAIStream``):

- Only choice 0 is read (the gateway rejects ``n`` > 1). ``content`` and ``refusal`` become
  ``TextDelta``s; ``reasoning_content`` (DeepSeek, vLLM) is dropped: the event model has no place
  for it.
- Tool calls are renumbered from 0 in order of appearance, so the index is the same whatever the
  upstream counted; a call without an ``id`` gets ``call_<random>``; only the first delta of a call
  carries ``id`` and ``name``, even if the upstream repeats them.
- ``Usage``: the last usage the upstream reported, emitted once, right before ``Finish``.
- ``Finish``: exactly one, after the body ended. The upstream's ``finish_reason`` wins
  (``function_call`` is read as ``tool_calls``, unknown values as ``stop``). A stream that ended,
  with or without ``[DONE]``, after some output but without a finish reason finishes with
  ``tool_calls`` if it produced tool calls, else ``stop``: the upstream closed cleanly, so the
  output is taken as complete. A stream that carried no chunk at all is a ``protocol`` error.
- ``{"error": ...}`` inside the stream raises ``ProviderError`` (kind from its code/type); a data
  line that is not JSON is a ``protocol`` error.
- A 2xx JSON answer (an upstream that ignores ``stream``) is accepted and translated the same way.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from gateway.providers.base import EmbeddingResult, Emit, ModelRequest, ProviderError, token_count
from gateway.providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.openai_embeddings import OpenAIEmbeddings
from gateway.providers.upstream_errors import error_from_event
from gateway.providers.upstream_http import HttpProvider, UpstreamHttp, json_body, upstream_headers
from gateway.providers.upstream_sse import SSEEvent
from gateway.settings import ProviderSettings

__all__ = ["OpenAICompletionsProvider", "OpenAIStream", "build_body"]

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})
_JSON = json.JSONDecoder()  # stateless: its raw_decode is json.loads' own parser


def build_body(request: ModelRequest) -> dict[str, Any]:
    """The upstream request document for ``request`` (always streaming, usage included)."""
    messages: list[Any] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(request.messages)
    body: dict[str, Any] = dict(request.params)
    body["model"] = request.model
    body["messages"] = messages
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


class OpenAIStream:
    """Translates one upstream answer (stream chunks or a whole completion) into events."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False  # saw [DONE]
        self._seen_chunk = False
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._tool_index: dict[int, int] = {}  # upstream index -> ours

    def feed(self, event: SSEEvent) -> list[ProviderEvent]:
        """Events for one SSE event; ``[DONE]`` sets ``done``. Raises ``ProviderError``."""
        data = event.data.strip()
        if self.done or not data:
            return []
        if data == "[DONE]":
            self.done = True
            return []
        try:
            # json.loads without its wrappers: ``data`` has no surrounding whitespace.
            chunk, end = _JSON.raw_decode(data)
        except ValueError:
            end = -1
        if end != len(data):
            raise ProviderError(
                "protocol",
                f"Provider '{self.provider}' sent an invalid stream chunk: {data[:100]!r}",
                provider=self.provider,
            )
        if event.event == "error" and isinstance(chunk, dict) and "error" not in chunk:
            chunk = {"error": chunk}
        return self.feed_chunk(chunk)

    def feed_chunk(self, chunk: Any) -> list[ProviderEvent]:
        """Events for one parsed chunk (or a whole non-streamed completion)."""
        if not isinstance(chunk, dict):
            raise ProviderError(
                "protocol",
                f"Provider '{self.provider}' sent a chunk that is not an object",
                provider=self.provider,
            )
        if chunk.get("error"):
            raise error_from_event(self.provider, chunk["error"])
        self._seen_chunk = True
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = Usage(
                prompt_tokens=token_count(usage.get("prompt_tokens")),
                completion_tokens=token_count(usage.get("completion_tokens")),
            )
        events: list[ProviderEvent] = []
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                self._choice(choice, events)
        return events

    def finish(self) -> list[ProviderEvent]:
        """The closing events (``Usage`` if reported, then ``Finish``) once the body ended."""
        if not self._seen_chunk:
            raise ProviderError(
                "protocol",
                f"Provider '{self.provider}' ended its stream without any data",
                provider=self.provider,
            )
        reason = self._finish_reason
        if reason is None:
            reason = "tool_calls" if self._tool_index else "stop"
        events: list[ProviderEvent] = [] if self._usage is None else [self._usage]
        events.append(Finish(reason))
        return events

    def _choice(self, choice: dict[str, Any], events: list[ProviderEvent]) -> None:
        """Append the events of choice 0 of a chunk to ``events``."""
        # "delta" in a stream chunk, "message" in a whole completion.
        delta = choice.get("delta") or choice.get("message")
        if isinstance(delta, dict):
            text = delta.get("content")
            if text and isinstance(text, str):
                events.append(TextDelta(text))
            refusal = delta.get("refusal")
            if refusal and isinstance(refusal, str):
                events.append(TextDelta(refusal))
            calls = delta.get("tool_calls")
            if calls:
                for position, call in enumerate(calls):
                    if isinstance(call, dict):
                        events.append(self._tool_call(position, call))
        reason = choice.get("finish_reason")
        if reason and isinstance(reason, str):
            if reason == "function_call":
                reason = "tool_calls"
            self._finish_reason = reason if reason in _FINISH_REASONS else "stop"

    def _tool_call(self, position: int, call: dict[str, Any]) -> ToolCallDelta:
        upstream_index = call.get("index")
        if not isinstance(upstream_index, int):
            upstream_index = position  # whole completions (and some servers) omit it
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # a few servers send parsed arguments
            arguments = json.dumps(arguments)
        arguments = arguments if isinstance(arguments, str) else ""
        index = self._tool_index.get(upstream_index)
        if index is not None:
            return ToolCallDelta(index, arguments)
        index = self._tool_index[upstream_index] = len(self._tool_index)
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"call_{uuid.uuid4().hex[:24]}"
        name = function.get("name")
        return ToolCallDelta(
            index, arguments, id=call_id, name=name if isinstance(name, str) else ""
        )


class OpenAICompletionsProvider(HttpProvider):
    """A ``Provider`` for an OpenAI-compatible upstream; one connection pool per instance."""

    def __init__(self, settings: ProviderSettings, *, http: UpstreamHttp | None = None) -> None:
        super().__init__(settings, http=http)
        self._url = settings.base_url.rstrip("/") + "/chat/completions"
        self._headers = upstream_headers(settings, "text/event-stream")
        self._embeddings = OpenAIEmbeddings(settings, self._http)

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        """Stream ``request`` from the upstream, emitting events in order, then one ``Finish``.

        Raises ``ProviderError``. On cancellation (in any phase, also while ``emit`` waits) the
        upstream connection is closed before the cancellation propagates.
        """
        translator = OpenAIStream(self.id)
        async with self._http.open_stream(
            self._url, body=json_body(build_body(request)), headers=self._headers
        ) as upstream:
            if "json" in upstream.content_type.lower():
                document = await upstream.read_json()
                for event in translator.feed_chunk(document):
                    await emit(event)
            else:
                await upstream.relay_events(translator, emit)
        for event in translator.finish():
            await emit(event)

    async def embed(
        self, model: str, inputs: list[str] | list[list[int]], params: Mapping[str, Any]
    ) -> EmbeddingResult:
        """``POST {baseUrl}/embeddings`` (see ``EmbeddingProvider.embed``)."""
        return await self._embeddings.embed(model, inputs, params)
