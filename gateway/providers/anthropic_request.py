"""Translating an OpenAI-shaped ``ModelRequest`` into an Anthropic Messages request. Pure.

Messages:

- ``user`` → ``user``; text parts → text blocks; ``image_url`` parts with a ``data:`` base64 URI →
  base64 image blocks (an http(s) URL → a URL image block);
- ``assistant`` → ``assistant``; its ``tool_calls`` → ``tool_use`` blocks whose ``input`` is the
  parsed JSON arguments (arguments that are not a JSON object are a ``bad_request``);
- ``tool`` → a ``user`` message holding a ``tool_result`` block for ``tool_call_id``;
- ``system``/``developer`` messages (normally already folded into ``request.system``) are
  appended to the system prompt;
- consecutive messages of the same role are merged (Anthropic wants user/assistant turns), with
  ``tool_result`` blocks first in a merged user message, as Anthropic requires; messages left
  without any block are dropped (Anthropic rejects empty content).

Parameters: ``max_tokens`` (required by Anthropic: the request's, else the model's ``maxTokens``
from the settings, else 4096), ``temperature`` (clamped to Anthropic's 0-1 range, since OpenAI
clients may send up to 2), ``top_p``, ``stop`` → ``stop_sequences``, ``tools`` (function tools →
``{name, description, input_schema}``), ``tool_choice`` (``auto``, ``none``, ``required`` → ``any``,
a named function → ``tool``), ``parallel_tool_calls: false`` → ``disable_parallel_tool_use``.
Anthropic has no equivalent for ``seed``, ``presence_penalty``, ``frequency_penalty`` and
``response_format``: they are not forwarded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.providers.base import ModelRequest, max_output_tokens
from gateway.providers.chat_parts import (
    bad_request,
    call_arguments,
    data_uri,
    function_tools,
    image_url,
    tool_call_id,
)
from gateway.settings import ProviderSettings
from gateway.types import ChatMessage, JSONObject

__all__ = ["DEFAULT_MAX_TOKENS", "anthropic_request", "translate_messages"]

DEFAULT_MAX_TOKENS = 4096


def anthropic_request(request: ModelRequest, settings: ProviderSettings) -> JSONObject:
    """The Messages API request body for ``request`` (always ``stream: true``).

    Raises ``ProviderError("bad_request")`` when the conversation cannot be expressed.
    """
    messages, extra_system = translate_messages(request.messages, settings.id)
    params = request.params
    body: JSONObject = {
        "model": request.model,
        "max_tokens": _max_tokens(request, settings),
        "messages": messages,
        "stream": True,
    }
    system = "\n\n".join(text for text in (request.system, *extra_system) if text)
    if system:
        body["system"] = system
    if isinstance(params.get("temperature"), int | float):
        body["temperature"] = min(1.0, max(0.0, float(params["temperature"])))
    if params.get("top_p") is not None:
        body["top_p"] = params["top_p"]
    stop = params.get("stop")
    if isinstance(stop, str):
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        body["stop_sequences"] = list(stop)
    tools = [_tool(function) for function in function_tools(params)]
    if tools:
        body["tools"] = tools
        choice = _tool_choice(params.get("tool_choice"))
        if params.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if choice != {"type": "auto"}:
            body["tool_choice"] = choice
    return body


def translate_messages(
    messages: Sequence[ChatMessage], provider: str = ""
) -> tuple[list[JSONObject], list[str]]:
    """Anthropic messages for OpenAI ``messages``, plus texts of stray system messages."""
    result: list[JSONObject] = []
    system: list[str] = []
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            system.extend(block["text"] for block in _blocks(message, provider))
            continue
        if role == "tool":
            target, blocks = "user", [_tool_result(message, provider)]
        elif role == "assistant":
            target, blocks = "assistant", _blocks(message, provider) + _tool_uses(message, provider)
        elif role == "user":
            target, blocks = "user", _blocks(message, provider)
        else:
            raise bad_request(provider, f"Unsupported message role {role!r} for Anthropic")
        if not blocks:
            continue
        if result and result[-1]["role"] == target:
            result[-1]["content"].extend(blocks)
        else:
            result.append({"role": target, "content": blocks})
    for entry in result:
        if entry["role"] == "user":
            # Stable: tool results first, everything else after, each in its original order.
            entry["content"].sort(key=lambda block: block.get("type") != "tool_result")
    return result, system


def _blocks(message: ChatMessage, provider: str) -> list[JSONObject]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[JSONObject] = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("text", "input_text"):
            text = part.get("text")
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image(part, provider))
        else:
            raise bad_request(provider, f"Unsupported content part type {kind!r} for Anthropic")
    return blocks


def _image(part: Mapping[str, Any], provider: str) -> JSONObject:
    url = image_url(part, provider)
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = data_uri(url, provider)
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _tool_uses(message: ChatMessage, provider: str) -> list[JSONObject]:
    blocks: list[JSONObject] = []
    for call in message.get("tool_calls") or ():
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": (call.get("function") or {}).get("name"),
                "input": call_arguments(call, provider),
            }
        )
    return blocks


def _tool_result(message: ChatMessage, provider: str) -> JSONObject:
    block: JSONObject = {"type": "tool_result", "tool_use_id": tool_call_id(message, provider)}
    content = message.get("content")
    if isinstance(content, str):
        block["content"] = content
    elif content:
        block["content"] = _blocks(message, provider)
    return block


def _tool(function: JSONObject) -> JSONObject:
    result: JSONObject = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        result["description"] = function["description"]
    return result


def _tool_choice(choice: Any) -> JSONObject:
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    return {"type": "auto"}


def _max_tokens(request: ModelRequest, settings: ProviderSettings) -> int:
    requested = max_output_tokens(request.params)
    if isinstance(requested, int) and requested > 0:
        return requested
    for model in settings.models:
        if model.id == request.model and model.max_tokens:
            return model.max_tokens
    return DEFAULT_MAX_TOKENS
