"""Translating a ``ModelRequest`` into an Ollama ``POST /api/chat`` request. Pure.

Messages keep Ollama's (OpenAI-like) roles: ``request.system`` becomes a leading ``system``
message (``developer`` messages are sent as ``system``); content becomes one string (text parts
joined with newlines) and ``image_url`` parts become ``images``, base64 without the ``data:``
prefix (remote URLs are a bad request: Ollama cannot fetch them); assistant ``tool_calls`` become
``{function: {name, arguments}}`` with ``arguments`` as a JSON object (arguments that are not one
are a bad request); tool results are ``tool`` messages carrying ``tool_name``, the name of the call
they answer.

Parameters: ``temperature``, ``top_p``, ``seed``, ``stop``, ``presence_penalty``,
``frequency_penalty`` and the output limit (as ``num_predict``) go into ``options``;
``response_format`` ``json_object`` → ``format: "json"``, ``json_schema`` → ``format: <schema>``;
function ``tools`` as they are; ``reasoning_effort`` → ``think`` (``none`` → false, ``minimal`` →
"low", ``xhigh`` → "high", others as they are). Ollama has no ``tool_choice`` or
``parallel_tool_calls``: they are not sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.providers.base import ModelRequest, max_output_tokens
from gateway.providers.chat_parts import (
    bad_request,
    call_arguments,
    data_uri,
    image_url,
    reasoning_effort,
    text_of,
    tool_call_id,
    tool_names,
)
from gateway.types import ChatMessage, JSONObject

__all__ = ["ollama_request", "ollama_url", "translate_messages"]

_OPTIONS = (
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("seed", "seed"),
    ("stop", "stop"),
    ("presence_penalty", "presence_penalty"),
    ("frequency_penalty", "frequency_penalty"),
)
_THINK: dict[str, bool | str] = {"none": False, "minimal": "low", "xhigh": "high"}


def ollama_url(base_url: str) -> str:
    """``{root}/api/chat``; a ``baseUrl`` copied from Ollama's OpenAI-compatible endpoint (ending
    in ``/v1``) is taken as its root."""
    return base_url.rstrip("/").removesuffix("/v1") + "/api/chat"


def ollama_request(request: ModelRequest, provider: str = "") -> JSONObject:
    """The ``/api/chat`` body for ``request`` (always ``stream: true``).

    Raises ``ProviderError("bad_request")`` when the conversation cannot be expressed.
    """
    messages: list[JSONObject] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(translate_messages(request.messages, provider))
    params = request.params
    body: JSONObject = {"model": request.model, "messages": messages, "stream": True}
    options: JSONObject = {
        theirs: params[ours] for ours, theirs in _OPTIONS if params.get(ours) is not None
    }
    limit = max_output_tokens(params)
    if limit is not None:
        options["num_predict"] = limit
    if options:
        body["options"] = options
    response_format = params.get("response_format")
    if isinstance(response_format, dict):
        schema = response_format.get("json_schema")
        if response_format.get("type") == "json_object":
            body["format"] = "json"
        elif response_format.get("type") == "json_schema" and isinstance(schema, dict):
            body["format"] = schema.get("schema") or "json"
    tools: Sequence[Any] = params.get("tools") or ()
    functions = [tool for tool in tools if isinstance(tool, dict) and "function" in tool]
    if functions:
        body["tools"] = functions
    effort = reasoning_effort(params)
    if effort is not None:
        body["think"] = _THINK.get(effort, effort)
    return body


def translate_messages(messages: Sequence[ChatMessage], provider: str = "") -> list[JSONObject]:
    """Ollama messages for chat ``messages`` (see the module docstring)."""
    names = tool_names(messages)
    result: list[JSONObject] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            call_id = tool_call_id(message, provider)
            entry: JSONObject = {"role": "tool", "content": text_of(message.get("content"), "\n")}
            if call_id in names:
                entry["tool_name"] = names[call_id]
            result.append(entry)
            continue
        if role not in ("user", "assistant", "system", "developer"):
            raise bad_request(provider, f"Unsupported message role {role!r} for Ollama")
        entry = {"role": "system" if role == "developer" else role}
        entry["content"], images = _content(message, provider)
        if images:
            entry["images"] = images
        calls = [
            {
                "function": {
                    "name": (call.get("function") or {}).get("name"),
                    "arguments": call_arguments(call, provider),
                }
            }
            for call in message.get("tool_calls") or ()
        ]
        if calls:
            entry["tool_calls"] = calls
        result.append(entry)
    return result


def _content(message: ChatMessage, provider: str) -> tuple[str, list[str]]:
    content = message.get("content")
    if not isinstance(content, list):
        return text_of(content), []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
        elif kind == "image_url":
            images.append(data_uri(image_url(part, provider), provider)[1])
        else:
            raise bad_request(provider, f"Unsupported content part type {kind!r} for Ollama")
    return "\n".join(texts), images
