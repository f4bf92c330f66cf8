from __future__ import annotations

import pytest

from gateway.agents.events import Finish, TextDelta, Usage
from gateway.providers.base import ProviderError
from gateway.settings import ProviderApi
from gateway.testing import FakeToolCall, FakeUpstream, Script
from gateway.types import ChatMessage
from tests.providers.support import collect, open_provider, request, settings_for, text_of, user

API: ProviderApi = "openai-responses"


async def test_request_as_the_upstream_sees_it(up: FakeUpstream) -> None:
    messages: list[ChatMessage] = [
        user("weather?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
    ]
    tool = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    settings = settings_for(
        up.base_url + "/", API, api_key="sk-r", headers={"OpenAI-Project": "p1"}
    )
    req = request(
        *messages,
        model="gpt-5",
        system="Be terse.",
        max_tokens=300,
        stop=["X"],
        seed=1,
        tools=[tool],
        tool_choice="auto",
        reasoning_effort="minimal",
    )
    async with open_provider(settings) as provider:
        await collect(provider, req)
    seen = up.requests[0]
    assert (seen.method, seen.path) == ("POST", "/v1/responses")
    assert seen.headers["authorization"] == "Bearer sk-r"
    assert seen.headers["openai-project"] == "p1"
    assert seen.headers["accept"] == "text/event-stream"
    assert seen.body == {
        "model": "gpt-5",
        "stream": True,
        "store": False,
        "instructions": "Be terse.",
        "max_output_tokens": 300,
        "tools": [
            {
                "type": "function",
                "name": "weather",
                "parameters": {"type": "object"},
                "strict": False,
            }
        ],
        "tool_choice": "auto",
        "reasoning": {"effort": "minimal"},
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "weather?"}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "weather",
                "arguments": '{"city":"Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "-3 C"},
        ],
    }


async def test_no_authorization_without_api_key(up: FakeUpstream) -> None:
    async with open_provider(settings_for(up.base_url, API)) as provider:
        await collect(provider)
    assert "authorization" not in up.requests[0].headers


@pytest.mark.parametrize(
    ("reason", "finish"), [("max_output_tokens", "length"), ("content_filter", "content_filter")]
)
async def test_incomplete_answers(up: FakeUpstream, reason: str, finish: str) -> None:
    up.script = Script(tokens=2, finish_reason=reason)
    async with open_provider(settings_for(up.base_url, API)) as provider:
        events = await collect(provider)
    assert events == [TextDelta("w0"), TextDelta(" w1"), Usage(11, 2), Finish(finish)]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("rate_limit_exceeded", "rate_limited"),
        ("invalid_prompt", "bad_request"),
        (None, "upstream"),
    ],
)
async def test_response_failed_mid_stream(up: FakeUpstream, code: str | None, kind: str) -> None:
    up.script = Script(
        tokens=4, fault="error_event", fault_after=2, error_type=code, error_message="no"
    )
    seen: list[object] = []

    async def emit(event: object) -> None:
        seen.append(event)

    async with open_provider(settings_for(up.base_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.stream(request(), emit)
    assert caught.value.kind == kind
    assert text_of(seen) == "w0 w1"  # type: ignore[arg-type]


async def test_omitted_end_marker_with_calls(up: FakeUpstream) -> None:
    up.script = Script(tokens=1, tool_calls=(FakeToolCall("f", '{"q": 1}'),), omit_finish=True)
    async with open_provider(settings_for(up.base_url, API)) as provider:
        events = await collect(provider)
    assert events[-1] == Finish("tool_calls")
    assert not any(isinstance(event, Usage) for event in events)


async def test_json_answer_with_an_incomplete_response(up: FakeUpstream) -> None:
    up.script = Script(text="cut", finish_reason="length", force_json=True)
    async with open_provider(settings_for(up.base_url, API)) as provider:
        assert await collect(provider) == [TextDelta("cut"), Usage(11, 1), Finish("length")]


async def test_json_answer_cut_short(up: FakeUpstream) -> None:
    up.script = Script(force_json=True, fault="close_mid_stream")
    async with open_provider(settings_for(up.base_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == "upstream"  # the body broke off half way
