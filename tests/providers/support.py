"""Helpers for provider tests: settings pointing at a fake upstream, event collection, a consumer
that can stop reading, and streams decoded from every cut of their bytes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from gateway.agents.events import ProviderEvent, TextDelta, ToolCallDelta
from gateway.providers.anthropic_messages import AnthropicMessagesProvider
from gateway.providers.base import ModelRequest, Provider
from gateway.providers.google_generative_ai import GoogleGenerativeAIProvider
from gateway.providers.ollama import OllamaProvider
from gateway.providers.openai_completions import OpenAICompletionsProvider
from gateway.providers.openai_responses import OpenAIResponsesProvider
from gateway.providers.upstream_ndjson import NDJSONDecoder
from gateway.providers.upstream_sse import SSEDecoder
from gateway.settings import ModelSettings, ProviderApi, ProviderSettings
from gateway.testing import FakeUpstream
from gateway.testing.fake_upstream_script import Send
from gateway.types import ChatMessage

PROVIDERS: dict[ProviderApi, Any] = {
    "openai-completions": OpenAICompletionsProvider,
    "anthropic-messages": AnthropicMessagesProvider,
    "openai-responses": OpenAIResponsesProvider,
    "google-generative-ai": GoogleGenerativeAIProvider,
    "ollama": OllamaProvider,
}


class Consumer:
    """An ``emit`` that counts text deltas, and blocks after ``block_after`` of them like a
    consumer that stopped reading."""

    def __init__(self, block_after: int | None = None) -> None:
        self.texts = 0
        self.block_after = block_after
        self.progressed = trio.Event()
        self.blocked = trio.Event()

    async def __call__(self, event: ProviderEvent) -> None:
        if isinstance(event, TextDelta):
            self.texts += 1
            self.progressed.set()
            if self.block_after is not None and self.texts >= self.block_after:
                self.blocked.set()
                await trio.sleep_forever()


def sent_bytes(steps: Iterable[object]) -> bytes:
    """All that a fake upstream's ``steps`` send."""
    return b"".join(step.data for step in steps if isinstance(step, Send))


def same_at_every_cut(
    body: bytes, translate: Callable[[bytes, bytes], list[ProviderEvent]]
) -> list[ProviderEvent]:
    """The events ``translate`` makes of ``body`` in two pieces, cut at every byte in turn;
    they must be the same for every cut."""
    expected = translate(body, b"")
    for cut in range(len(body)):
        assert translate(body[:cut], body[cut:]) == expected, cut
    return expected


def sse_events(stream: Any, *pieces: bytes) -> list[ProviderEvent]:
    """What a stream translator makes of the SSE ``pieces``, fed in order, then finished."""
    decoder = SSEDecoder()
    events: list[ProviderEvent] = []
    for piece in pieces:
        for event in decoder.feed(piece):
            events.extend(stream.feed(event))
    for event in decoder.close():
        events.extend(stream.feed(event))
    events.extend(stream.finish())
    return events


def ndjson_events(stream: Any, *pieces: bytes) -> list[ProviderEvent]:
    """What a stream translator makes of the NDJSON ``pieces``, fed in order, then finished."""
    decoder = NDJSONDecoder()
    values = [value for piece in pieces for value in decoder.feed(piece)]
    events = [event for value in [*values, *decoder.close()] for event in stream.feed(value)]
    return [*events, *stream.finish()]


def base_url_for(up: FakeUpstream, api: ProviderApi) -> str:
    """The ``baseUrl`` a user would configure for ``api`` on the fake upstream (the API root for
    Gemini and Ollama, ``.../v1`` for the others)."""
    return up.root_url if api in ("google-generative-ai", "ollama") else up.base_url


def settings_for(
    base_url: str,
    api: ProviderApi = "openai-completions",
    *,
    provider_id: str = "fake",
    models: Sequence[ModelSettings] = (),
    **fields: Any,
) -> ProviderSettings:
    return ProviderSettings(
        id=provider_id, api=api, base_url=base_url, models=tuple(models), **fields
    )


@asynccontextmanager
async def open_provider(settings: ProviderSettings) -> AsyncIterator[Provider]:
    provider: Provider = PROVIDERS[settings.api](settings)
    try:
        yield provider
    finally:
        await provider.aclose()


def user(text: str = "hi") -> ChatMessage:
    return {"role": "user", "content": text}


def request(
    *messages: ChatMessage, model: str = "m", system: str | None = None, **params: Any
) -> ModelRequest:
    return ModelRequest(
        model=model, messages=list(messages) or [user()], system=system, params=params
    )


async def collect(provider: Provider, req: ModelRequest | None = None) -> list[ProviderEvent]:
    events: list[ProviderEvent] = []

    async def emit(event: ProviderEvent) -> None:
        events.append(event)

    await provider.stream(req or request(), emit)
    return events


def text_of(events: Sequence[ProviderEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def tool_calls_of(events: Sequence[ProviderEvent]) -> list[dict[str, Any]]:
    """Tool calls assembled from deltas, checking id/name come only on the first delta."""
    calls: list[dict[str, Any]] = []
    for event in events:
        if not isinstance(event, ToolCallDelta):
            continue
        if event.index == len(calls):
            assert event.id and event.name is not None
            calls.append({"id": event.id, "name": event.name, "arguments": event.arguments})
        else:
            assert event.id is None and event.name is None
            calls[event.index]["arguments"] += event.arguments
    for call in calls:
        json.loads(call["arguments"])
    return calls


@asynccontextmanager
async def unanswered_listener() -> AsyncIterator[int]:
    """A port whose accept queue is full, so connecting to it hangs in the SYN phase."""
    listener = trio.socket.socket()
    clients: list[trio.socket.SocketType] = []
    try:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(16):
            client = trio.socket.socket()
            clients.append(client)
            with trio.move_on_after(0.2) as waiting:
                await client.connect(("127.0.0.1", port))
            if waiting.cancelled_caught:
                break
        else:  # pragma: no cover
            pytest.skip("the kernel accepted every connection: cannot make connect hang")
        yield port
    finally:
        for client in clients:
            client.close()
        listener.close()
