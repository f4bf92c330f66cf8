"""Reading the chat-shaped pieces of a ``ModelRequest``, for the request translators. Pure.

A ``ModelRequest`` speaks OpenAI Chat Completions (see ``gateway.types.ChatMessage`` and
``ModelRequest.params``); each API kind rewrites it into its own request. What every translator
needs to read the same way lives here: message text, ``data:`` image URIs, tool-call arguments
as a JSON object, the function tools and the reasoning effort. Whatever cannot be expressed is a
``ProviderError("bad_request")`` naming the provider, raised before anything is sent.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.providers.base import ProviderError
from gateway.types import ChatMessage, JSONObject, ToolCall

__all__ = [
    "REASONING_EFFORTS",
    "bad_request",
    "call_arguments",
    "data_uri",
    "function_tools",
    "image_url",
    "new_call_id",
    "reasoning_effort",
    "text_of",
    "tool_call_id",
    "tool_names",
]

# The efforts clients may ask for (OpenAI's names, ``none`` and ``xhigh`` included).
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")

_DATA_URI = re.compile(r"data:(?P<type>[^;,]+)(?P<params>(?:;[^,]*)?),(?P<data>.*)", re.DOTALL)


def bad_request(provider: str, message: str) -> ProviderError:
    return ProviderError("bad_request", message, provider=provider)


def new_call_id() -> str:
    """An id for a tool call the upstream gave none (``call_<random>``, as OpenAI's look)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def text_of(content: object, separator: str = "") -> str:
    """The text of a message ``content``: the string itself, or its text parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return separator.join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in ("text", "input_text", "output_text")
            and isinstance(part.get("text"), str)
        )
    return ""


def image_url(part: Mapping[str, Any], provider: str) -> str:
    """The URL of an ``image_url`` content part (a ``data:`` URI once validated)."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise bad_request(provider, "An image_url part has no url")
    return url


def data_uri(url: str, provider: str) -> tuple[str, str]:
    """``(media type, base64 data)`` of a base64 ``data:`` URI; anything else is a bad request
    (the APIs that need this cannot fetch remote images)."""
    match = _DATA_URI.fullmatch(url)
    if match is None or ";base64" not in match["params"]:
        raise bad_request(provider, "Images must be base64 data: URIs")
    return match["type"], match["data"]


def call_arguments(call: ToolCall, provider: str) -> JSONObject:
    """The parsed arguments of an assistant tool call; they must be a JSON object."""
    function: Mapping[str, Any] = call.get("function") or {}
    arguments = function.get("arguments") or "{}"
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise bad_request(
            provider, f"Tool call {call.get('id')!r} has arguments that are not a JSON object"
        )
    return parsed


def tool_call_id(message: ChatMessage, provider: str) -> str:
    """The call a ``tool`` message answers; a message naming none is a bad request."""
    call_id = message.get("tool_call_id")
    if not call_id:
        raise bad_request(provider, "A tool message has no tool_call_id")
    return call_id


def tool_names(messages: Iterable[ChatMessage]) -> dict[str, str]:
    """Tool call id → function name, over every assistant tool call of ``messages`` (for APIs
    whose tool results name the function rather than the call)."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            name = (call.get("function") or {}).get("name")
            if isinstance(call.get("id"), str) and isinstance(name, str):
                names[call["id"]] = name
    return names


def function_tools(params: Mapping[str, Any]) -> list[JSONObject]:
    """The ``function`` objects of the request's function tools, in order."""
    tools: Sequence[Any] = params.get("tools") or ()
    return [
        tool["function"]
        for tool in tools
        if isinstance(tool, dict)
        and tool.get("type", "function") == "function"
        and isinstance(tool.get("function"), dict)
    ]


def reasoning_effort(params: Mapping[str, Any]) -> str | None:
    """The request's ``reasoning_effort`` when it is one of ``REASONING_EFFORTS``."""
    effort = params.get("reasoning_effort")
    return effort if effort in REASONING_EFFORTS else None
