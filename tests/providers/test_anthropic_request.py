from __future__ import annotations

from typing import Any

import pytest

from gateway.providers.anthropic_request import (
    DEFAULT_MAX_TOKENS,
    anthropic_request,
    translate_messages,
)
from gateway.providers.base import ModelRequest, ProviderError
from gateway.settings import ModelSettings, ProviderSettings
from gateway.types import ChatMessage

SETTINGS = ProviderSettings(id="a", api="anthropic-messages")
PNG = "data:image/png;base64,iVBORw0KGgo="


def body(*messages: Any, **params: Any) -> dict[str, Any]:
    messages = messages or ({"role": "user", "content": "hi"},)
    return anthropic_request(ModelRequest("m", list(messages), params=params), SETTINGS)


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def test_minimal_request() -> None:
    assert body() == {
        "model": "m",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": [text("hi")]}],
        "stream": True,
    }


def test_max_tokens_from_params_then_model_settings() -> None:
    settings = ProviderSettings(
        id="a",
        api="anthropic-messages",
        models=(ModelSettings("other"), ModelSettings("m", max_tokens=99)),
    )
    messages: list[ChatMessage] = [{"role": "user", "content": "hi"}]
    assert anthropic_request(ModelRequest("m", messages), settings)["max_tokens"] == 99
    request = ModelRequest("m", messages, params={"max_tokens": 5})
    assert anthropic_request(request, settings)["max_tokens"] == 5


def test_consecutive_roles_merge_and_tool_results_come_first() -> None:
    messages, system = translate_messages(
        [
            {"role": "system", "content": "stray system"},
            {"role": "user", "content": "one"},
            {
                "role": "user",
                "content": [{"type": "input_text", "text": "two"}, {"type": "text", "text": ""}],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}},
                    {
                        "id": "t2",
                        "type": "function",
                        "function": {"name": "g", "arguments": '{"k": [1]}'},
                    },
                ],
            },
            {"role": "user", "content": "interjection"},
            {"role": "tool", "tool_call_id": "t1", "content": [{"type": "text", "text": "r1"}]},
            {"role": "tool", "tool_call_id": "t2", "content": None},
            {"role": "assistant", "content": ""},
        ]
    )
    assert system == ["stray system"]
    assert messages == [
        {"role": "user", "content": [text("one"), text("two")]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                {"type": "tool_use", "id": "t2", "name": "g", "input": {"k": [1]}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [text("r1")]},
                {"type": "tool_result", "tool_use_id": "t2"},
                text("interjection"),
            ],
        },
    ]


def test_stray_system_messages_join_the_system_prompt() -> None:
    request = ModelRequest(
        "m",
        [{"role": "developer", "content": "dev"}, {"role": "user", "content": "hi"}],
        system="agent",
    )
    assert anthropic_request(request, SETTINGS)["system"] == "agent\n\ndev"


def test_images() -> None:
    messages, _ = translate_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": PNG}},
                    {"type": "image_url", "image_url": "https://example.com/cat.jpg"},
                    text("what?"),
                ],
            }
        ]
    )
    assert messages[0]["content"] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        text("what?"),
    ]


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
            },
            "base64",
        ),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, "no url"),
        ({"role": "user", "content": [{"type": "input_audio"}]}, "input_audio"),
        ({"role": "tool", "content": "x"}, "tool_call_id"),
        ({"role": "wizard", "content": "x"}, "wizard"),
        (
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                ],
            },
            "JSON object",
        ),
    ],
)
def test_untranslatable_messages(message: Any, error: str) -> None:
    with pytest.raises(ProviderError, match=error) as caught:
        translate_messages([message], "prov")
    assert (caught.value.kind, caught.value.provider) == ("bad_request", "prov")


def test_sampling_parameters() -> None:
    result = body(
        temperature=-1, top_p=0.3, stop=["a", "b"], seed=4, presence_penalty=1, response_format={}
    )
    assert result["temperature"] == 0.0
    assert result["top_p"] == 0.3
    assert result["stop_sequences"] == ["a", "b"]
    for dropped in ("seed", "presence_penalty", "response_format"):
        assert dropped not in result
    assert "stop_sequences" not in body(stop=[])
    assert body(temperature=0.7)["temperature"] == 0.7


TOOL = {"type": "function", "function": {"name": "f"}}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, None),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        ("auto", True, None),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: Any) -> None:
    params: dict[str, Any] = {"tools": [TOOL, {"type": "retrieval"}]}
    if choice is not None:
        params["tool_choice"] = choice
    if parallel is not None:
        params["parallel_tool_calls"] = parallel
    result = body(**params)
    assert result["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]
    assert result.get("tool_choice") == expected


def test_no_tools_no_tool_choice() -> None:
    result = body(tool_choice="required")
    assert "tools" not in result and "tool_choice" not in result
