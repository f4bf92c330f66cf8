from __future__ import annotations

from typing import Any

import pytest

from gateway.agents.events import Finish, TextDelta, ToolCallDelta, Usage
from gateway.providers.base import ModelRequest, ProviderError
from gateway.providers.responses_wire import (
    input_items,
    output_events,
    response_error,
    response_events,
    responses_request,
)
from gateway.types import ChatMessage
from tests.providers.support import user

PNG = "data:image/png;base64,iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def conversation() -> list[ChatMessage]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "now", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "9:00"}]},
        {"role": "developer", "content": "Answer in French."},
        user("Thanks"),
    ]


def test_input_items() -> None:
    assert input_items(conversation()) == [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": PNG, "detail": "low"},
            ],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me check."}],
        },
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city":"Oslo"}',
        },
        {"type": "function_call", "call_id": "call_2", "name": "now", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "-3 C"},
        {"type": "function_call_output", "call_id": "call_2", "output": "9:00"},
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "Answer in French."}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
    ]


def test_assistant_with_only_tool_calls_and_image_detail_default() -> None:
    messages: list[ChatMessage] = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]},
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "user", "content": ""},
    ]
    assert input_items(messages) == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_image", "image_url": PNG, "detail": "auto"}],
        }
    ]


@pytest.mark.parametrize(
    "message",
    [
        {"role": "tool", "content": "x"},
        {"role": "function", "content": "x"},
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
        {"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": PNG}}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
    ],
)
def test_untranslatable_messages(message: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        input_items([message], "p")
    assert (caught.value.kind, caught.value.provider) == ("bad_request", "p")


def test_request_body() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    params = {
        "temperature": 0.3,
        "top_p": 0.8,
        "max_completion_tokens": 200,
        "max_tokens": 999,
        "stop": ["END"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "tools": [WEATHER, {"type": "function", "function": {"name": "now", "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "out", "schema": schema, "strict": True, "description": "d"},
        },
        "reasoning_effort": "low",
    }
    request = ModelRequest("gpt-5", [user("hi")], system="Be brief.", params=params)
    assert responses_request(request) == {
        "model": "gpt-5",
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
        ],
        "stream": True,
        "store": False,
        "instructions": "Be brief.",
        "temperature": 0.3,
        "top_p": 0.8,
        "parallel_tool_calls": False,
        "max_output_tokens": 200,
        "tools": [
            {
                "type": "function",
                "name": "weather",
                "description": "Weather by city",
                "parameters": WEATHER["function"]["parameters"],  # type: ignore[index]
                "strict": False,
            },
            {
                "type": "function",
                "name": "now",
                "parameters": {"type": "object", "properties": {}},
                "strict": True,
            },
        ],
        "tool_choice": {"type": "function", "name": "weather"},
        "text": {
            "format": {
                "type": "json_schema",
                "name": "out",
                "schema": schema,
                "strict": True,
                "description": "d",
            }
        },
        "reasoning": {"effort": "low"},
    }


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, {"format": {"type": "text"}}),
        ({"type": "json_object"}, {"format": {"type": "json_object"}}),
        (
            {"type": "json_schema", "json_schema": {}},
            {
                "format": {
                    "type": "json_schema",
                    "name": "response",
                    "schema": {"type": "object"},
                    "strict": False,
                }
            },
        ),
        ({"type": "other"}, None),
    ],
)
def test_text_format(response_format: Any, expected: Any) -> None:
    body = responses_request(
        ModelRequest("m", [user()], params={"response_format": response_format})
    )
    assert body.get("text") == expected


def test_minimal_request_and_string_tool_choice() -> None:
    bare = responses_request(ModelRequest("m", [user()], params={"tool_choice": "required"}))
    assert set(bare) == {"model", "input", "stream", "store"}
    params = {"tools": [WEATHER], "tool_choice": "required", "reasoning_effort": "bogus"}
    body = responses_request(ModelRequest("m", [user()], params=params))
    assert body["tool_choice"] == "required"
    assert "reasoning" not in body


def completed(**fields: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", "status": "completed", **fields}


def test_response_events() -> None:
    response = completed(
        output=[
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "x"}]},
            {
                "type": "message",
                "content": [
                    {"type": "output_text", "text": "Hello"},
                    {"type": "refusal", "refusal": " no"},
                    {"type": "output_text", "text": ""},
                    "junk",
                ],
            },
            {"type": "function_call", "call_id": "call_9", "name": "f", "arguments": '{"a":1}'},
            {"type": "function_call", "id": "fc_2", "name": "g", "arguments": ""},
            "junk",
        ],
        usage={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
    )
    assert response_events(response) == [
        TextDelta("Hello"),
        TextDelta(" no"),
        ToolCallDelta(0, '{"a":1}', id="call_9", name="f"),
        ToolCallDelta(1, "{}", id="fc_2", name="g"),
        Usage(12, 5),
        Finish("tool_calls"),
    ]
    assert output_events({"output": None}) == []


@pytest.mark.parametrize(
    ("details", "finish"),
    [
        ({"reason": "max_output_tokens"}, "length"),
        ({"reason": "content_filter"}, "content_filter"),
        ({"reason": "something_else"}, "length"),
        (None, "length"),
    ],
)
def test_incomplete_response(details: Any, finish: str) -> None:
    response = {"status": "incomplete", "incomplete_details": details, "output": []}
    assert response_events(response) == [Finish(finish)]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("rate_limit_exceeded", "rate_limited"),
        ("context_length_exceeded", "bad_request"),
        ("invalid_prompt", "bad_request"),
        ("invalid_image_url", "bad_request"),
        ("image_too_large", "bad_request"),
        ("server_error", "upstream"),
        (None, "upstream"),
    ],
)
def test_failed_response_kinds(code: str | None, kind: str) -> None:
    response = {"status": "failed", "error": {"code": code, "message": "it broke"}}
    with pytest.raises(ProviderError) as caught:
        response_events(response, "p")
    assert (caught.value.kind, caught.value.provider) == (kind, "p")
    assert "it broke" in caught.value.message


def test_response_error_without_details() -> None:
    error = response_error("p", None)
    assert (error.kind, error.message) == ("upstream", "Provider 'p' reported an error: no message")
