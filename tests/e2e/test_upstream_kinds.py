"""Client → gateway → fake upstream speaking the Responses, Gemini and Ollama APIs, all real HTTP on
loopback: relaying (streaming and not), tools both ways, usage, parameters and fallbacks (error
mapping and the upstream seeing its connection close when the client leaves: ``test_upstream``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import trio

from gateway.testing import FakeToolCall, FakeUpstream, Script, open_fake_upstream
from tests.upstreams import chat, serve, sse, weather_answered

APIS = ["openai-responses", "google-generative-ai", "ollama"]
LIMIT = 0.1
PATHS = {
    "openai-responses": "/v1/responses",
    "google-generative-ai": "/v1beta/models/m:streamGenerateContent?alt=sse",
    "ollama": "/api/chat",
}


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream() as upstream:
        yield upstream


@pytest.mark.parametrize("api", APIS)
async def test_content_and_usage_relayed_exactly(
    nursery: trio.Nursery, up: FakeUpstream, api: str
) -> None:
    server = await serve(nursery, up, api)
    text = 'Grüße, 世界! «quotes» "and" \\ backslashes\nnew line'
    up.enqueue(Script(text=text, prompt_tokens=13))
    plain = await chat(server)
    assert plain.status_code == 200, plain.text
    assert plain.json()["choices"][0]["message"]["content"] == text
    assert plain.json()["choices"][0]["finish_reason"] == "stop"
    assert plain.json()["usage"]["prompt_tokens"] == 13
    up.enqueue(Script(text=text, prompt_tokens=13))
    streamed = await chat(server, stream=True, stream_options={"include_usage": True})
    events = sse(streamed)
    chunks = [e for e in events[:-1] if e["choices"]]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in chunks) == text
    assert events[-2]["usage"]["prompt_tokens"] == 13
    assert events[-1] == "[DONE]"
    assert [record.path for record in up.requests] == [PATHS[api]] * 2
    assert up.requests[0].body.get("stream", True) is True  # always streamed from upstream


@pytest.mark.parametrize("api", APIS)
async def test_tools_both_ways(nursery: trio.Nursery, up: FakeUpstream, api: str) -> None:
    server = await serve(nursery, up, api)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
        }
    ]
    call = FakeToolCall(name="get_weather", arguments='{"city": "Paris"}')
    up.enqueue(Script(text="", tool_calls=(call,)))
    first = await chat(server, tools=tools, stream=True)
    events = sse(first)
    deltas = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"] and calls[0]["function"]["name"] == "get_weather"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"city": "Paris"}
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    call_id = calls[0]["id"]
    up.enqueue(Script(text="", tool_calls=(call,)))
    plain = await chat(server, tools=tools)
    choice = plain.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    up.enqueue(Script(text="It is sunny."))
    follow_up = await chat(
        server,
        tools=tools,
        messages=weather_answered(call_id),
    )
    assert follow_up.json()["choices"][0]["message"]["content"] == "It is sunny."
    sent = json.dumps(up.requests[2].body)
    assert "sunny, 21 C" in sent and "get_weather" in sent
    assert "get_weather" in json.dumps(up.requests[0].body)
    if api == "google-generative-ai":  # a key Gemini rejects is not sent
        declaration = up.requests[0].body["tools"][0]["functionDeclarations"][0]
        assert declaration["parameters"] == {
            "type": "object",
            "properties": {"city": {"type": "string"}},
        }


async def test_parameters_reach_each_upstream_in_its_shape(
    nursery: trio.Nursery, up: FakeUpstream
) -> None:
    params = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": ["##"], "seed": 7}
    seen = {}
    for api in APIS:
        server = await serve(nursery, up, api)
        response = await chat(server, **params)
        assert response.status_code == 200, response.text
        seen[api] = up.requests[-1].body
    responses, gemini, ollama = (seen[api] for api in APIS)
    assert (responses["temperature"], responses["top_p"], responses["max_output_tokens"]) == (
        0.2,
        0.9,
        50,
    )
    assert "stop" not in responses and "seed" not in responses
    assert gemini["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "seed": 7,
        "maxOutputTokens": 50,
        "stopSequences": ["##"],
    }
    assert ollama["options"] == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["##"],
        "num_predict": 50,
    }


@pytest.mark.parametrize("api", APIS)
async def test_error_mid_stream_is_an_sse_error(
    nursery: trio.Nursery, up: FakeUpstream, api: str
) -> None:
    server = await serve(nursery, up, api)
    up.enqueue(Script(tokens=5, fault="error_event", fault_after=2))
    response = await chat(server, stream=True)
    events = sse(response)
    assert response.status_code == 200
    assert "error" in events[-2] and events[-1] == "[DONE]"


@pytest.mark.parametrize("api", APIS)
async def test_fallback_to_another_provider(
    nursery: trio.Nursery, up: FakeUpstream, api: str
) -> None:
    server = await serve(nursery, up, api, fallbacks=["backup/b"])
    up.enqueue(Script(status=503), Script(text="from the backup"))
    response = await chat(server)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "from the backup"
    assert [record.path for record in up.requests] == [PATHS[api], "/v1/chat/completions"]
