from __future__ import annotations

import json

import pytest
import trio

from gateway.agents.events import Finish, TextDelta, ToolCallDelta, Usage
from gateway.providers.base import ModelRequest, ProviderError
from gateway.providers.openai_completions import OpenAIStream, build_body
from gateway.providers.upstream_sse import SSEEvent
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

TEXT = 'Hello, wörld! 😀\n\nSecond  line\twith "quotes" and \\backslash\\ '


async def test_content_is_relayed_exactly(up: FakeUpstream) -> None:
    up.script = Script(text=TEXT)
    async with open_provider(settings_for(up.base_url)) as provider:
        events = await collect(provider)
    assert text_of(events) == TEXT
    deltas = [event for event in events if isinstance(event, TextDelta)]
    assert len(deltas) == len(Script(text=TEXT).pieces())
    assert events[-2:] == [Usage(11, len(deltas)), Finish("stop")]


async def test_request_forwarded_as_openai_shape(up: FakeUpstream) -> None:
    messages: list[ChatMessage] = [
        user("look"),
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    params = {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["END"],
        "seed": 3,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }
    settings = settings_for(up.base_url + "/", api_key="sk-test", headers={"X-Org": "acme"})
    async with open_provider(settings) as provider:
        await collect(provider, request(*messages, model="gpt-x", system="Be brief.", **params))
    seen = up.requests[0]
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == "Bearer sk-test"
    assert seen.headers["x-org"] == "acme"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {
        **params,
        "model": "gpt-x",
        "messages": [{"role": "system", "content": "Be brief."}, *messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def test_no_authorization_without_api_key(up: FakeUpstream) -> None:
    async with open_provider(settings_for(up.base_url)) as provider:
        await collect(provider, request(user()))
    assert "authorization" not in up.requests[0].headers
    assert up.requests[0].body["messages"] == [user()]


async def test_tool_calls_are_relayed(up: FakeUpstream) -> None:
    calls = (
        FakeToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}', id="call_a"),
        FakeToolCall("noop", "{}"),
    )
    up.script = Script(text="Let me check.", tool_calls=calls)
    async with open_provider(settings_for(up.base_url)) as provider:
        events = await collect(provider)
    assert text_of(events) == "Let me check."
    assert tool_calls_of(events) == [
        {"id": "call_a", "name": "get_weather", "arguments": calls[0].arguments},
        {"id": "call_fake_1", "name": "noop", "arguments": "{}"},
    ]
    assert events[-1] == Finish("tool_calls")


@pytest.mark.parametrize(
    "framing",
    [
        {"crlf": True},
        {"comments": True},
        {"split_bytes": 3},
        {"crlf": True, "comments": True, "split_bytes": 1},
        {"fault": "malformed_sse", "fault_after": 2},
    ],
)
async def test_framing_variants(up: FakeUpstream, framing: dict[str, object]) -> None:
    up.script = Script(text=TEXT).with_overrides(framing)
    async with open_provider(settings_for(up.base_url)) as provider:
        events = await collect(provider)
    assert text_of(events) == TEXT
    assert events[-1] == Finish("stop")


async def test_missing_done_still_finishes(up: FakeUpstream) -> None:
    up.script = Script(tokens=3, fault="no_done")
    async with open_provider(settings_for(up.base_url)) as provider:
        events = await collect(provider)
    assert text_of(events) == "w0 w1 w2"
    assert events[-1] == Finish("stop")


async def test_missing_done_and_finish_reason_defaults(up: FakeUpstream) -> None:
    up.enqueue(
        Script(tokens=2, fault="no_done", omit_finish=True),
        Script(tokens=0, tool_calls=(FakeToolCall("f"),), fault="no_done", omit_finish=True),
    )
    async with open_provider(settings_for(up.base_url)) as provider:
        assert (await collect(provider))[-1] == Finish("stop")
        assert (await collect(provider))[-1] == Finish("tool_calls")


async def test_finish_reason_length(up: FakeUpstream) -> None:
    up.script = Script(tokens=2, finish_reason="length")
    async with open_provider(settings_for(up.base_url)) as provider:
        assert (await collect(provider))[-1] == Finish("length")


async def test_invalid_json_chunk_is_a_protocol_error(up: FakeUpstream) -> None:
    up.script = Script(tokens=4, fault="invalid_json", fault_after=2)
    seen: list[object] = []

    async def emit(event: object) -> None:
        seen.append(event)

    async with open_provider(settings_for(up.base_url)) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.stream(request(), emit)
    assert (caught.value.kind, caught.value.status, caught.value.provider) == (
        "protocol",
        502,
        "fake",
    )
    assert text_of(seen) == "w0 w1"  # type: ignore[arg-type]


async def test_error_event_mid_stream(up: FakeUpstream) -> None:
    up.script = Script(tokens=4, fault="error_event", error_message="model crashed")
    async with open_provider(settings_for(up.base_url)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == "upstream"
    assert "model crashed" in caught.value.message


async def test_error_event_rate_limit_mid_stream(up: FakeUpstream) -> None:
    up.script = Script(tokens=4, fault="error_event", error_type="rate_limit_error")
    async with open_provider(settings_for(up.base_url)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert (caught.value.kind, caught.value.status) == ("rate_limited", 429)


async def test_connection_is_reused_after_complete_answers(up: FakeUpstream) -> None:
    async with open_provider(settings_for(up.base_url)) as provider:
        for _ in range(3):
            await collect(provider)
    assert [record.connection for record in up.requests] == [1, 1, 1]


# Pure translation: OpenAIStream.


def feed_all(*chunks: object) -> list[object]:
    stream = OpenAIStream("p")
    events: list[object] = []
    for chunk in chunks:
        events.extend(stream.feed_chunk(chunk))
    return events + list(stream.finish())


def test_whole_completion_document() -> None:
    completion = {
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "hi",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    assert feed_all(completion) == [
        TextDelta("hi"),
        ToolCallDelta(0, "{}", id="c", name="f"),
        Usage(3, 4),
        Finish("tool_calls"),
    ]


def test_tool_indexes_are_renumbered_and_ids_generated() -> None:
    def call(index: int, **function: object) -> dict[str, object]:
        return {"choices": [{"delta": {"tool_calls": [{"index": index, "function": function}]}}]}

    events = feed_all(
        call(3, name="a", arguments=""),
        call(3, arguments='{"x":'),
        call(7, name="b", arguments={"y": 1}),
        call(3, name="a", arguments="1}"),
    )
    first, second, third, fourth, finish = events
    assert isinstance(first, ToolCallDelta) and first.index == 0 and first.name == "a"
    assert first.id is not None and first.id.startswith("call_")
    assert second == ToolCallDelta(0, '{"x":')
    assert isinstance(third, ToolCallDelta) and (third.index, third.arguments) == (1, '{"y": 1}')
    assert fourth == ToolCallDelta(0, "1}")
    assert finish == Finish("tool_calls")


def test_other_choices_refusal_and_reasons() -> None:
    events = feed_all(
        {"choices": [{"index": 1, "delta": {"content": "other"}}]},
        {"choices": [{"index": 0, "delta": {"refusal": "no", "reasoning_content": "hmm"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "function_call"}]},
    )
    assert events == [TextDelta("no"), Finish("tool_calls")]
    assert feed_all({"choices": [{"delta": {}, "finish_reason": "eos"}]}) == [Finish("stop")]
    assert feed_all({"choices": [], "usage": {"prompt_tokens": True}}) == [
        Usage(0, 0),
        Finish("stop"),
    ]


def test_done_and_blank_events() -> None:
    stream = OpenAIStream("p")
    assert stream.feed(SSEEvent("  ")) == []
    assert stream.feed(SSEEvent('{"choices":[{"delta":{"content":"a"}}]}')) == [TextDelta("a")]
    assert stream.feed(SSEEvent("[DONE]")) == []
    assert stream.done
    assert stream.feed(SSEEvent('{"choices":[{"delta":{"content":"late"}}]}')) == []


def test_error_typed_event_without_error_member() -> None:
    stream = OpenAIStream("p")
    with pytest.raises(ProviderError) as caught:
        stream.feed(SSEEvent('{"message": "quota", "type": "rate_limit_error"}', "error"))
    assert caught.value.kind == "rate_limited"


@pytest.mark.parametrize("chunk", ["[1]", '"text"'])
def test_non_object_chunk_is_a_protocol_error(chunk: str) -> None:
    with pytest.raises(ProviderError, match="not an object") as caught:
        OpenAIStream("p").feed(SSEEvent(chunk))
    assert caught.value.kind == "protocol"


def test_empty_stream_is_a_protocol_error() -> None:
    with pytest.raises(ProviderError, match="without any data") as caught:
        OpenAIStream("p").finish()
    assert caught.value.kind == "protocol"


def test_build_body_params_cannot_override_streaming() -> None:
    params = {"stream": False, "stream_options": {"include_usage": False}, "model": "x"}
    body = build_body(ModelRequest(model="m", messages=[user()], params=params))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "m"


async def test_json_answer_is_accepted(up: FakeUpstream) -> None:
    # An upstream (or proxy) that ignores "stream": true and answers one JSON document.
    up.script = Script(
        text="whole answer", tool_calls=(FakeToolCall("f", '{"a": 1}'),), force_json=True
    )
    async with open_provider(settings_for(up.base_url)) as provider:
        events = await collect(provider)
    assert up.requests[0].body["stream"] is True
    assert events == [
        TextDelta("whole answer"),
        ToolCallDelta(0, '{"a": 1}', id="call_fake_0", name="f"),
        Usage(11, 3),
        Finish("tool_calls"),
    ]


@pytest.mark.parametrize(
    "data", ['{"choices": []', '{"choices": []} {}', '{"choices": []}x', "NaNa", "\ufeff{}"]
)
def test_data_that_is_not_one_json_document_is_a_protocol_error(data: str) -> None:
    with pytest.raises(ProviderError, match="invalid stream chunk") as caught:
        OpenAIStream("p").feed(SSEEvent(data))
    assert caught.value.kind == "protocol"


def test_content_refusal_and_finish_in_one_delta() -> None:
    stream = OpenAIStream("p")
    chunk = {
        "choices": [
            {"index": 1, "delta": {"content": "other choice"}},
            {"index": 0, "delta": {"content": "a", "refusal": "b"}, "finish_reason": "length"},
        ]
    }
    assert stream.feed(SSEEvent(json.dumps(chunk))) == [TextDelta("a"), TextDelta("b")]
    assert stream.feed(SSEEvent('{"choices": [{"delta": {"content": ["part"]}}]}')) == []
    assert stream.finish() == [Finish("length")]


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (Script(force_json=True, first_token_delay=60), "Provider 'fake' sent nothing within 5 s"),
        (
            Script(force_json=True, fault="hang_mid_stream"),
            "Provider 'fake' stalled: no data for 7 s",
        ),
    ],
    ids=["first-byte", "idle"],
)
async def test_json_answer_deadlines(
    up: FakeUpstream, script: Script, message: str, autojump_clock: trio.abc.Clock
) -> None:
    up.script = script
    settings = settings_for(up.base_url, first_byte_timeout_seconds=5, idle_timeout_seconds=7)
    async with open_provider(settings) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert (caught.value.kind, caught.value.message) == ("timeout", message)
