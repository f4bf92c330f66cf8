from __future__ import annotations

import pytest

from gateway.agents.events import Finish, TextDelta, Usage
from gateway.providers.base import ProviderError
from gateway.settings import ProviderApi
from gateway.testing import FakeToolCall, FakeUpstream, Script
from gateway.types import ChatMessage
from tests.providers.support import (
    collect,
    open_provider,
    request,
    settings_for,
    tool_calls_of,
    user,
)

API: ProviderApi = "ollama"
PNG = "data:image/png;base64,iVBORw0KGgo="


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_base_url_root_or_openai_compatible(up: FakeUpstream, suffix: str) -> None:
    async with open_provider(settings_for(up.root_url + suffix, API)) as provider:
        await collect(provider)
    assert up.requests[0].path == "/api/chat"


async def test_request_as_the_upstream_sees_it(up: FakeUpstream) -> None:
    messages: list[ChatMessage] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        }
    ]
    settings = settings_for(up.root_url, API, headers={"X-Team": "a"})
    async with open_provider(settings) as provider:
        await collect(provider, request(*messages, model="llava", max_tokens=20, seed=3))
    seen = up.requests[0]
    assert seen.headers["x-team"] == "a"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "llava",
        "stream": True,
        "messages": [{"role": "user", "content": "What is this?", "images": ["iVBORw0KGgo="]}],
        "options": {"seed": 3, "num_predict": 20},
    }


async def test_api_key_for_a_proxied_server(up: FakeUpstream) -> None:
    async with open_provider(settings_for(up.root_url, API, api_key="k")) as provider:
        await collect(provider)
    assert up.requests[0].headers["authorization"] == "Bearer k"


async def test_tool_calls_arrive_whole(up: FakeUpstream) -> None:
    up.script = Script(tokens=0, tool_calls=(FakeToolCall("a", '{"x": 1}'), FakeToolCall("b")))
    async with open_provider(settings_for(up.root_url, API)) as provider:
        events = await collect(provider)
    calls = tool_calls_of(events)
    assert [(c["name"], c["arguments"]) for c in calls] == [("a", '{"x": 1}'), ("b", "{}")]
    assert len({c["id"] for c in calls}) == 2
    assert events[-2:] == [Usage(11, 2), Finish("tool_calls")]


async def test_a_non_streamed_answer(up: FakeUpstream) -> None:
    # A server (or proxy) that answers one JSON object although asked to stream.
    up.script = Script(text="all at once", force_json=True)
    async with open_provider(settings_for(up.root_url, API)) as provider:
        assert await collect(provider) == [TextDelta("all at once"), Usage(11, 3), Finish("stop")]


async def test_model_not_found(up: FakeUpstream) -> None:
    up.script = Script(status=404, error_message="model 'nope' not found, try pulling it first")
    async with open_provider(settings_for(up.root_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider, request(user(), model="nope"))
    assert (caught.value.kind, caught.value.message) == (
        "bad_request",
        "model 'nope' not found, try pulling it first",
    )
