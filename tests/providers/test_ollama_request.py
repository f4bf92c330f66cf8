from __future__ import annotations

from typing import Any

import pytest

from gateway.providers.base import ModelRequest, ProviderError
from gateway.providers.ollama_request import ollama_request, ollama_url, translate_messages
from gateway.types import ChatMessage
from tests.providers.support import user

PNG = "data:image/png;base64,iVBORw0KGgo="
TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:11434",
        "http://127.0.0.1:11434/",
        "http://127.0.0.1:11434/v1",
        "http://127.0.0.1:11434/v1/",
    ],
)
def test_url(base: str) -> None:
    assert ollama_url(base) == "http://127.0.0.1:11434/api/chat"


def test_messages() -> None:
    messages: list[ChatMessage] = [
        {"role": "developer", "content": "Be nice."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is"},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "text", "text": "this?"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "-3 C"},
        {"role": "tool", "tool_call_id": "elsewhere", "content": [{"type": "text", "text": "x"}]},
    ]
    assert translate_messages(messages) == [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "What is\nthis?", "images": ["iVBORw0KGgo="]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "-3 C", "tool_name": "weather"},
        {"role": "tool", "content": "x"},
    ]


@pytest.mark.parametrize(
    "message",
    [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
        },
        {"role": "user", "content": [{"type": "input_audio"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "function": {"arguments": "1"}}],
        },
        {"role": "tool", "content": "x"},
        {"role": "function", "content": "x"},
    ],
)
def test_untranslatable(message: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        translate_messages([message], "p")
    assert (caught.value.kind, caught.value.provider) == ("bad_request", "p")


def test_request_body() -> None:
    params = {
        "temperature": 0.1,
        "top_p": 0.5,
        "max_completion_tokens": 64,
        "stop": ["END"],
        "seed": 9,
        "presence_penalty": 0.2,
        "frequency_penalty": 0.3,
        "tools": [TOOL, {"type": "web_search"}],
        "tool_choice": "required",
        "parallel_tool_calls": True,
        "response_format": {"type": "json_object"},
        "reasoning_effort": "medium",
    }
    request = ModelRequest("llama3.1", [user("hi")], system="Sys.", params=params)
    assert ollama_request(request) == {
        "model": "llama3.1",
        "messages": [{"role": "system", "content": "Sys."}, {"role": "user", "content": "hi"}],
        "stream": True,
        "options": {
            "temperature": 0.1,
            "top_p": 0.5,
            "seed": 9,
            "stop": ["END"],
            "presence_penalty": 0.2,
            "frequency_penalty": 0.3,
            "num_predict": 64,
        },
        "format": "json",
        "tools": [TOOL],
        "think": "medium",
    }


def test_minimal_body() -> None:
    assert ollama_request(ModelRequest("m", [user()])) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            {"type": "object"},
        ),
        ({"type": "json_schema", "json_schema": {"name": "x"}}, "json"),
        ({"type": "text"}, None),
    ],
)
def test_format(response_format: Any, expected: Any) -> None:
    body = ollama_request(ModelRequest("m", [user()], params={"response_format": response_format}))
    assert body.get("format") == expected


@pytest.mark.parametrize(
    ("effort", "think"),
    [("none", False), ("minimal", "low"), ("low", "low"), ("high", "high"), ("xhigh", "high")],
)
def test_reasoning_effort(effort: str, think: Any) -> None:
    body = ollama_request(ModelRequest("m", [user()], params={"reasoning_effort": effort}))
    assert body["think"] == think
