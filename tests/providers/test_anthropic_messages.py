from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.agents.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.anthropic_messages import AnthropicStream, messages_url
from gateway.providers.base import ProviderError
from gateway.providers.upstream_sse import SSEEvent
from gateway.settings import ModelSettings, ProviderApi
from gateway.testing import FakeToolCall, FakeUpstream, Script
from gateway.types import ChatMessage
from tests.providers.support import (
    collect,
    open_provider,
    request,
    settings_for,
    text_of,
    tool_calls_of,
    user,
)

API: ProviderApi = "anthropic-messages"
TEXT = 'Bonjour, le monde ! 🌍\n\n  indented\tand "quoted" '


async def test_content_and_usage_are_relayed(up: FakeUpstream) -> None:
    up.script = Script(text=TEXT, prompt_tokens=21)
    async with open_provider(settings_for(up.base_url, API)) as provider:
        events = await collect(provider)
    assert text_of(events) == TEXT
    pieces = len(Script(text=TEXT).pieces())
    assert events[-2:] == [Usage(21, pieces), Finish("stop")]


async def test_request_is_translated_and_headers_set(up: FakeUpstream) -> None:
    settings = settings_for(
        up.base_url,
        API,
        api_key="sk-ant",
        headers={"anthropic-beta": "x"},
        models=[ModelSettings("claude-x", max_tokens=777)],
    )
    messages: list[ChatMessage] = [
        user("weather?"),
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "-3 C"},
    ]
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    req = request(
        *messages,
        model="claude-x",
        system="Be terse.",
        temperature=1.5,
        top_p=0.5,
        stop="###",
        tools=tools,
        tool_choice="required",
        seed=1,
    )
    async with open_provider(settings) as provider:
        await collect(provider, req)
    seen = up.requests[0]
    assert (seen.method, seen.path) == ("POST", "/v1/messages")
    assert seen.headers["x-api-key"] == "sk-ant"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    assert seen.headers["anthropic-beta"] == "x"
    assert seen.headers["content-type"] == "application/json"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "model": "claude-x",
        "max_tokens": 777,
        "stream": True,
        "system": "Be terse.",
        "temperature": 1.0,
        "top_p": 0.5,
        "stop_sequences": ["###"],
        "tools": [
            {
                "name": "weather",
                "description": "Weather by city",
                "input_schema": tools[0]["function"]["parameters"],
            }
        ],
        "tool_choice": {"type": "any"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "weather",
                        "input": {"city": "Oslo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "-3 C"}],
            },
        ],
    }


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
async def test_base_url_with_or_without_v1(up: FakeUpstream, suffix: str) -> None:
    root = up.base_url.removesuffix("/v1")
    async with open_provider(settings_for(root + suffix, API)) as provider:
        await collect(provider)
    assert up.requests[0].path == "/v1/messages"


def test_messages_url() -> None:
    assert messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert messages_url("https://x/v1/") == "https://x/v1/messages"
    assert messages_url("https://x/proxy/anthropic") == "https://x/proxy/anthropic/v1/messages"


async def test_tool_calls_are_relayed(up: FakeUpstream) -> None:
    calls = (
        FakeToolCall("search", '{"query": "trio cancel scopes", "limit": 3}'),
        FakeToolCall("now", "", id="toolu_now"),
    )
    up.script = Script(text="Looking.", tool_calls=calls)
    async with open_provider(settings_for(up.base_url, API)) as provider:
        events = await collect(provider)
    assert text_of(events) == "Looking."
    assert tool_calls_of(events) == [
        {"id": "toolu_fake_1", "name": "search", "arguments": calls[0].arguments},
        {"id": "toolu_now", "name": "now", "arguments": "{}"},  # no input streamed: "{}"
    ]
    assert events[-1] == Finish("tool_calls")


@pytest.mark.parametrize("framing", [{"crlf": True}, {"comments": True}, {"split_bytes": 2}])
async def test_framing_variants(up: FakeUpstream, framing: dict[str, object]) -> None:
    up.script = Script(text=TEXT).with_overrides(framing)
    async with open_provider(settings_for(up.base_url, API)) as provider:
        assert text_of(await collect(provider)) == TEXT


async def test_missing_message_stop_still_finishes(up: FakeUpstream) -> None:
    up.script = Script(tokens=2, fault="no_done", finish_reason="max_tokens")
    async with open_provider(settings_for(up.base_url, API)) as provider:
        events = await collect(provider)
    assert events[-1] == Finish("length")


async def test_error_event_mid_stream(up: FakeUpstream) -> None:
    up.script = Script(tokens=5, fault="error_event", fault_after=2, error_message="Overloaded")
    async with open_provider(settings_for(up.base_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert (caught.value.kind, caught.value.status) == ("upstream", 502)
    assert "Overloaded" in caught.value.message


async def test_invalid_json_event(up: FakeUpstream) -> None:
    up.script = Script(tokens=5, fault="invalid_json", fault_after=2)
    async with open_provider(settings_for(up.base_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == "protocol"


async def test_anthropic_error_body_message(up: FakeUpstream) -> None:
    up.script = Script(status=400, error_type="invalid_request_error", error_message="bad role")
    async with open_provider(settings_for(up.base_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert (caught.value.kind, caught.value.message) == ("bad_request", "bad role")


async def test_untranslatable_request_is_a_bad_request(up: FakeUpstream) -> None:
    bad = {"role": "assistant", "content": None, "tool_calls": [_call("c", "not json")]}
    async with open_provider(settings_for(up.base_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider, request(user(), bad))  # type: ignore[arg-type]
    assert caught.value.kind == "bad_request"
    assert up.requests == []


def _call(call_id: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": arguments}}


# Pure translation of the event stream: AnthropicStream.


def run(*docs: dict[str, Any]) -> list[ProviderEvent]:
    stream = AnthropicStream("p")
    events: list[ProviderEvent] = []
    for doc in docs:
        events.extend(stream.feed(SSEEvent(json.dumps(doc), str(doc.get("type")))))
    return events + stream.finish()


def delta(index: int, **fields: Any) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": fields}


def test_thinking_blocks_are_dropped_and_tool_indexes_count_tools() -> None:
    events = run(
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "input_tokens": 5,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 10,
                    "output_tokens": 1,
                }
            },
        },
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": ""},
        },
        delta(0, type="thinking_delta", thinking="hmm"),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "text", "text": "Hi"},
        },
        delta(1, type="text_delta", text=" there"),
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        },
        delta(2, type="input_json_delta", partial_json='{"a"'),
        delta(2, type="input_json_delta", partial_json=""),
        delta(2, type="input_json_delta", partial_json=": 1}"),
        {"type": "content_block_stop", "index": 2},
        {"type": "ping"},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    )
    assert events == [
        TextDelta("Hi"),
        TextDelta(" there"),
        ToolCallDelta(0, "", id="t", name="f"),
        ToolCallDelta(0, '{"a"'),
        ToolCallDelta(0, ": 1}"),
        Usage(115, 9),
        Finish("tool_calls"),
    ]


def test_tool_input_given_whole_in_block_start() -> None:
    events = run(
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {"x": 1}},
        },
        {"type": "content_block_stop", "index": 0},
    )
    assert events == [
        ToolCallDelta(0, "", id="t", name="f"),
        ToolCallDelta(0, '{"x": 1}'),
        Finish("tool_calls"),
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("something_new", "stop"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    events = run({"type": "message_delta", "delta": {"stop_reason": stop_reason}})
    assert events == [Finish(finish)]


def test_events_after_message_stop_are_ignored() -> None:
    stream = AnthropicStream("p")
    stream.feed(SSEEvent('{"type": "message_stop"}'))
    assert stream.done
    assert stream.feed(SSEEvent("not even json")) == []


@pytest.mark.parametrize("data", ["{bad", "[1]"])
def test_bad_event_data(data: str) -> None:
    with pytest.raises(ProviderError) as caught:
        AnthropicStream("p").feed(SSEEvent(data))
    assert caught.value.kind == "protocol"


def test_error_event_kinds() -> None:
    error = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
    with pytest.raises(ProviderError) as caught:
        AnthropicStream("p").feed(SSEEvent(json.dumps(error), "error"))
    assert caught.value.kind == "rate_limited"


def test_empty_stream_is_a_protocol_error() -> None:
    with pytest.raises(ProviderError, match="without any event"):
        AnthropicStream("p").finish()


def test_malformed_shapes_are_tolerated() -> None:
    assert run(
        {"type": "content_block_start", "index": 0, "content_block": "x"},
        {"type": "content_block_delta", "index": 0, "delta": "x"},
        {"type": "content_block_delta", "index": 5, "delta": {"type": "input_json_delta"}},
        {"type": "message_start", "message": "x"},
        {"type": "message_delta", "usage": "x"},
    ) == [Finish("stop")]
