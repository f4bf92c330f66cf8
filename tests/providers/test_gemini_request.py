from __future__ import annotations

from typing import Any

import pytest

from gateway.providers.base import ModelRequest, ProviderError
from gateway.providers.gemini_request import (
    SKIP_SIGNATURE,
    gemini_request,
    gemini_url,
    translate_contents,
)
from gateway.types import ChatMessage
from tests.providers.support import user

PNG = "data:image/png;base64,iVBORw0KGgo="


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


@pytest.mark.parametrize(
    "base",
    [
        "https://generativelanguage.googleapis.com",
        "https://generativelanguage.googleapis.com/",
        "https://generativelanguage.googleapis.com/v1beta",
        "https://generativelanguage.googleapis.com/v1beta/",
    ],
)
def test_url(base: str) -> None:
    assert gemini_url(base, "gemini-2.5-flash") == (
        "https://generativelanguage.googleapis.com/v1beta/models/"
        "gemini-2.5-flash:streamGenerateContent?alt=sse"
    )


def test_url_model_forms() -> None:
    assert gemini_url("http://h", "models/gemini-3-pro") == (
        "http://h/v1beta/models/gemini-3-pro:streamGenerateContent?alt=sse"
    )
    assert "models/a%20b%3Fc:stream" in gemini_url("http://h", "a b?c")


def test_contents() -> None:
    messages: list[ChatMessage] = [
        {"role": "system", "content": "Stray system."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": PNG}},
            ],
        },
        user("And in Oslo."),
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                call("c1", "weather", '{"city": "here"}'),
                call("c2", "weather", '{"city": "Oslo"}'),
            ],  # type: ignore[list-item]
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 20}'},
        {"role": "tool", "tool_call_id": "c2", "content": "-3 C"},
        user("Thanks!"),
        {"role": "assistant", "content": [{"type": "text", "text": "You're welcome."}]},
        {"role": "assistant", "content": ""},
    ]
    contents, system = translate_contents(messages, "gemini-3-flash")
    assert system == ["Stray system."]
    assert contents == [
        {
            "role": "user",
            "parts": [
                {"text": "Weather here?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"text": "And in Oslo."},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {
                    "functionCall": {"name": "weather", "args": {"city": "here"}},
                    "thoughtSignature": SKIP_SIGNATURE,
                },
                {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "weather", "response": {"temp": 20}}},
                {"functionResponse": {"name": "weather", "response": {"content": "-3 C"}}},
                {"text": "Thanks!"},
            ],
        },
        {"role": "model", "parts": [{"text": "You're welcome."}]},
    ]


@pytest.mark.parametrize("model", ["gemini-2.5-pro", "models/gemini-2.0-flash", "gemini-1.5-pro"])
def test_no_signature_for_older_models(model: str) -> None:
    messages: list[ChatMessage] = [
        user(),
        {"role": "assistant", "content": None, "tool_calls": [call("c", "f", "")]},  # type: ignore[list-item]
    ]
    contents, _ = translate_contents(messages, model)
    assert contents[1]["parts"] == [{"functionCall": {"name": "f", "args": {}}}]


@pytest.mark.parametrize(
    "message",
    [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
        },
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,abc"}}]},
        {"role": "user", "content": [{"type": "input_audio"}]},
        {"role": "assistant", "content": None, "tool_calls": [call("c", "f", "[1]")]},
        {"role": "tool", "content": "x"},
        {"role": "tool", "tool_call_id": "unknown", "content": "x"},
        {"role": "function", "content": "x"},
    ],
)
def test_untranslatable(message: Any) -> None:
    with pytest.raises(ProviderError) as caught:
        translate_contents([message], "gemini-3", "p")
    assert (caught.value.kind, caught.value.provider) == ("bad_request", "p")


def test_request_body() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Weather by city",
                "parameters": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}},
    ]
    params = {
        "temperature": 0.5,
        "top_p": 0.9,
        "max_tokens": 100,
        "stop": ["END", "STOP"],
        "seed": 4,
        "presence_penalty": 1.0,
        "frequency_penalty": 1.0,
        "parallel_tool_calls": False,
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object", "$schema": "s"}},
        },
        "reasoning_effort": "high",
    }
    request = ModelRequest("gemini-3-pro", [user("hi")], system="Be brief.", params=params)
    assert gemini_request(request) == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "weather",
                        "description": "Weather by city",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                    {"name": "now"},
                ]
            }
        ],
        "toolConfig": {
            "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
        },
        "generationConfig": {
            "temperature": 0.5,
            "topP": 0.9,
            "seed": 4,
            "maxOutputTokens": 100,
            "stopSequences": ["END", "STOP"],
            "responseMimeType": "application/json",
            "responseSchema": {"type": "object"},
            "thinkingConfig": {"thinkingLevel": "high"},
        },
    }


def test_minimal_body_and_stray_system() -> None:
    request = ModelRequest("m", [{"role": "developer", "content": "Dev."}, user()])
    assert gemini_request(request) == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Dev."}]},
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (None, None),
    ],
)
def test_tool_choice(choice: str | None, config: Any) -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    body = gemini_request(
        ModelRequest("m", [user()], params={"tools": [tool], "tool_choice": choice})
    )
    assert body.get("toolConfig") == (None if config is None else {"functionCallingConfig": config})


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-flash", "minimal", {"thinkingBudget": 512}),
        ("gemini-2.5-pro", "low", {"thinkingBudget": 1024}),
        ("gemini-2.5-pro", "medium", {"thinkingBudget": 8192}),
        ("gemini-2.5-pro", "xhigh", {"thinkingBudget": 24576}),
        ("gemini-3-flash", "minimal", {"thinkingLevel": "minimal"}),
        ("gemini-3-flash", "none", {"thinkingLevel": "minimal"}),
        ("gemini-3-pro", "xhigh", {"thinkingLevel": "high"}),
        ("gemini-3-pro", "low", {"thinkingLevel": "low"}),
    ],
)
def test_reasoning_effort(model: str, effort: str, thinking: Any) -> None:
    body = gemini_request(ModelRequest(model, [user()], params={"reasoning_effort": effort}))
    assert body["generationConfig"] == {"thinkingConfig": thinking}


def test_json_object_and_string_stop() -> None:
    params = {"response_format": {"type": "json_object"}, "stop": "END"}
    body = gemini_request(ModelRequest("m", [user()], params=params))
    assert body["generationConfig"] == {
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
    }
    text = gemini_request(ModelRequest("m", [user()], params={"response_format": {"type": "text"}}))
    assert "generationConfig" not in text
