from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.agents.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.base import ProviderError
from gateway.providers.responses_stream import ResponsesStream
from gateway.providers.upstream_sse import SSEEvent
from gateway.testing import FakeToolCall, Script
from gateway.testing.fake_upstream_responses import responses_stream
from tests.providers.support import same_at_every_cut, sent_bytes, sse_events


def run(*docs: dict[str, Any]) -> list[ProviderEvent]:
    stream = ResponsesStream("p")
    events: list[ProviderEvent] = []
    for doc in docs:
        events.extend(stream.feed(SSEEvent(json.dumps(doc), str(doc.get("type")))))
    return events + stream.finish()


USAGE = {"input_tokens": 30, "output_tokens": 12, "total_tokens": 42}


def test_a_full_stream_with_reasoning_text_and_calls() -> None:
    events = run(
        {"type": "response.created", "response": {"status": "in_progress"}},
        {"type": "response.in_progress", "response": {}},
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "reasoning"}},
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs", "delta": "thinking"},
        {"type": "response.reasoning_text.delta", "item_id": "rs", "delta": "more"},
        {"type": "response.output_item.done", "output_index": 0, "item": {"type": "reasoning"}},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "message", "id": "msg", "content": []},
        },
        {"type": "response.output_text.delta", "item_id": "msg", "delta": "Hel"},
        {"type": "response.output_text.delta", "item_id": "msg", "delta": ""},
        {"type": "response.output_text.delta", "item_id": "msg", "delta": "lo"},
        {"type": "response.output_text.done", "item_id": "msg", "text": "Hello"},
        {
            "type": "response.output_item.added",
            "output_index": 2,
            "item": {"type": "function_call", "id": "fc_a", "call_id": "call_a", "name": "f"},
        },
        {"type": "response.function_call_arguments.delta", "item_id": "fc_a", "delta": '{"x"'},
        {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": ":1}"},
        {"type": "response.function_call_arguments.done", "item_id": "fc_a", "arguments": "{}"},
        {
            "type": "response.output_item.done",
            "output_index": 2,
            "item": {"type": "function_call", "id": "fc_a", "arguments": '{"x":1}'},
        },
        {
            "type": "response.output_item.added",
            "output_index": 3,
            "item": {"type": "function_call", "id": "fc_b", "call_id": "call_b", "name": "g"},
        },
        {"type": "response.function_call_arguments.done", "item_id": "fc_b", "arguments": "{}"},
        {"type": "response.completed", "response": {"status": "completed", "usage": USAGE}},
        {"type": "response.output_text.delta", "delta": "after the end"},
    )
    assert events == [
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallDelta(0, "", id="call_a", name="f"),
        ToolCallDelta(0, '{"x"'),
        ToolCallDelta(0, ":1}"),
        ToolCallDelta(1, "", id="call_b", name="g"),
        ToolCallDelta(1, "{}"),
        Usage(30, 12),
        Finish("tool_calls"),
    ]


def test_calls_seen_whole_or_only_at_done() -> None:
    events = run(
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "function_call", "id": "a", "name": "f", "arguments": '{"k":2}'},
        },
        {"type": "response.function_call_arguments.delta", "item_id": "unknown", "delta": "x"},
        {"type": "response.function_call_arguments.done", "item_id": "unknown", "arguments": "x"},
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {"type": "function_call", "id": "b", "call_id": "cb", "name": "g"},
        },
    )
    first, second, third, fourth, finish = events
    assert isinstance(first, ToolCallDelta) and first.id and first.id.startswith("call_")
    assert second == ToolCallDelta(0, '{"k":2}')
    assert third == ToolCallDelta(1, "", id="cb", name="g")
    assert fourth == ToolCallDelta(1, "{}")
    assert finish == Finish("tool_calls")


def test_refusal_and_incomplete() -> None:
    incomplete = {
        "status": "incomplete",
        "incomplete_details": {"reason": "content_filter"},
        "usage": USAGE,
    }
    assert run(
        {"type": "response.refusal.delta", "delta": "I can't"},
        {"type": "response.incomplete", "response": incomplete},
    ) == [TextDelta("I can't"), Usage(30, 12), Finish("content_filter")]
    length = {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    assert run({"type": "response.incomplete", "response": length}) == [Finish("length")]


def test_final_object_is_used_when_nothing_streamed() -> None:
    final = {
        "status": "completed",
        "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "whole"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        ],
    }
    assert run({"type": "response.completed", "response": final}) == [
        TextDelta("whole"),
        ToolCallDelta(0, "{}", id="c", name="f"),
        Finish("tool_calls"),
    ]


def test_event_name_from_the_sse_field_and_done_marker() -> None:
    stream = ResponsesStream("p")
    assert stream.feed(SSEEvent('{"delta": "x"}', "response.output_text.delta")) == [TextDelta("x")]
    assert stream.feed(SSEEvent("   ")) == []
    assert stream.feed(SSEEvent("[DONE]")) == []
    assert stream.done
    assert stream.feed(SSEEvent("not json")) == []
    assert stream.finish() == [Finish("stop")]


def test_terminal_event_without_response_object() -> None:
    assert run({"type": "response.completed"}) == [Finish("stop")]


@pytest.mark.parametrize(
    ("doc", "kind"),
    [
        ({"type": "error", "code": "rate_limit_exceeded", "message": "slow down"}, "rate_limited"),
        ({"type": "error", "error": {"code": "invalid_prompt", "message": "no"}}, "bad_request"),
        ({"type": "error", "code": "server_error", "message": "oops"}, "upstream"),
        (
            {
                "type": "response.failed",
                "response": {"status": "failed", "error": {"code": "context_length_exceeded"}},
            },
            "bad_request",
        ),
        ({"type": "response.failed", "response": "junk"}, "upstream"),
    ],
)
def test_errors(doc: dict[str, Any], kind: str) -> None:
    with pytest.raises(ProviderError) as caught:
        ResponsesStream("p").feed(SSEEvent(json.dumps(doc)))
    assert caught.value.kind == kind


@pytest.mark.parametrize("data", ["{bad", "[1]"])
def test_bad_data_is_a_protocol_error(data: str) -> None:
    with pytest.raises(ProviderError) as caught:
        ResponsesStream("p").feed(SSEEvent(data))
    assert caught.value.kind == "protocol"


def test_empty_stream_is_a_protocol_error() -> None:
    with pytest.raises(ProviderError, match="without any event"):
        ResponsesStream("p").finish()


def test_the_fake_stream_split_at_every_byte() -> None:
    # The fake upstream's own stream, decoded and translated from every possible split.
    script = Script(text="Hi there, wörld 😀", tool_calls=(FakeToolCall("f", '{"a": [1, 2]}'),))
    body = sent_bytes(responses_stream(script, {}))
    expected = same_at_every_cut(body, lambda *pieces: sse_events(ResponsesStream("p"), *pieces))
    assert "".join(e.text for e in expected if isinstance(e, TextDelta)) == script.text
    calls = [e for e in expected if isinstance(e, ToolCallDelta)]
    assert calls[0] == ToolCallDelta(0, "", id="call_fake_0", name="f")
    assert "".join(c.arguments for c in calls) == '{"a": [1, 2]}'
    assert expected[-2:] == [Usage(11, 5), Finish("tool_calls")]
