"""The OpenAI Responses API on the wire, to and from the gateway's shapes. Pure: no I/O.

Chat messages → input items (``input_items``)::

    user / system / developer  {"type": "message", "role", "content": [
                                   {"type": "input_text", "text"}
                                   | {"type": "input_image", "image_url", "detail"}]}
    assistant                  {"type": "message", "role": "assistant",
                                 "content": [{"type": "output_text", "text"}]}   (if any text)
                               then {"type": "function_call", "call_id", "name", "arguments"}
                               for each of its ``tool_calls``
    tool                       {"type": "function_call_output", "call_id", "output"}  (its text)

A ``ModelRequest`` → a request body (``responses_request``): ``stream: true`` and ``store: false``
always; ``system`` → ``instructions``; ``temperature``, ``top_p``, ``parallel_tool_calls`` as they
are; ``max_tokens`` / ``max_completion_tokens`` → ``max_output_tokens``; function tools flattened
to ``{type: "function", name, description, parameters, strict}`` (``strict`` always sent: the
Responses API takes a missing one as true, Chat Completions as false); ``tool_choice`` with a named
function → ``{"type": "function", "name"}``; ``response_format`` → ``text.format`` (``json_schema``
→ ``{type, name, schema, strict}``); ``reasoning_effort`` → ``reasoning.effort``. The Responses API
has no ``stop``, ``seed``, ``presence_penalty`` or ``frequency_penalty``: they are not sent.

A response object → provider events (``response_events``, ``output_events``): ``output_text`` and
``refusal`` parts → ``TextDelta``; each ``function_call`` item → one whole ``ToolCallDelta`` (``id``
= its ``call_id``); ``reasoning`` items are dropped (the event model has no place for them);
``usage`` (``input_tokens`` / ``output_tokens``) → ``Usage``; ``Finish`` from ``finish_reason``.
A ``failed`` response raises its ``error`` as a ``ProviderError`` (``response_error``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.providers.base import ModelRequest, ProviderError, max_output_tokens, token_count
from gateway.providers.chat_parts import (
    bad_request,
    function_tools,
    image_url,
    new_call_id,
    reasoning_effort,
    text_of,
    tool_call_id,
)
from gateway.providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.upstream_errors import error_from_event
from gateway.types import ChatMessage, JSONObject

__all__ = [
    "finish_reason",
    "input_items",
    "output_events",
    "response_error",
    "response_events",
    "responses_request",
    "usage_of",
]

# Error codes of the Responses API that mean the request itself is at fault.
_BAD_REQUEST_CODES = ("invalid_", "image_", "unsupported_", "empty_", "failed_to_download")


def responses_request(request: ModelRequest, provider: str = "") -> JSONObject:
    """The ``POST /responses`` body for ``request`` (see the module docstring).

    Raises ``ProviderError("bad_request")`` when the conversation cannot be expressed.
    """
    params = request.params
    body: JSONObject = {
        "model": request.model,
        "input": input_items(request.messages, provider),
        "stream": True,
        "store": False,
    }
    if request.system:
        body["instructions"] = request.system
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if params.get(key) is not None:
            body[key] = params[key]
    limit = max_output_tokens(params)
    if limit is not None:
        body["max_output_tokens"] = limit
    tools = [_tool(function) for function in function_tools(params)]
    if tools:
        body["tools"] = tools
        choice = params.get("tool_choice")
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            body["tool_choice"] = {"type": "function", "name": name}
        elif isinstance(choice, str):
            body["tool_choice"] = choice
    text_format = _text_format(params.get("response_format"))
    if text_format is not None:
        body["text"] = {"format": text_format}
    effort = reasoning_effort(params)
    if effort is not None:
        body["reasoning"] = {"effort": effort}
    return body


def input_items(messages: Sequence[ChatMessage], provider: str = "") -> list[JSONObject]:
    """Responses input items for chat ``messages``, in order (see the module docstring)."""
    items: list[JSONObject] = []
    for message in messages:
        role = message["role"]
        if role == "tool":
            call_id = tool_call_id(message, provider)
            output = text_of(message.get("content"))
            items.append({"type": "function_call_output", "call_id": call_id, "output": output})
            continue
        if role not in ("user", "assistant", "system", "developer"):
            raise bad_request(provider, f"Unsupported message role {role!r} for Responses")
        parts = _parts(message, provider)
        if parts:
            items.append({"type": "message", "role": role, "content": parts})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments") or "{}",
                }
            )
    return items


def output_events(response: Mapping[str, Any]) -> list[ProviderEvent]:
    """The text and tool-call events of a response object's ``output`` (no usage, no finish)."""
    events: list[ProviderEvent] = []
    calls = 0
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if not isinstance(part, dict):
                    continue
                key = {"output_text": "text", "refusal": "refusal"}.get(str(part.get("type")))
                text = part.get(key) if key else None
                if isinstance(text, str) and text:
                    events.append(TextDelta(text))
        elif item.get("type") == "function_call":
            arguments = item.get("arguments")
            events.append(
                ToolCallDelta(
                    calls,
                    arguments if isinstance(arguments, str) and arguments else "{}",
                    id=str(item.get("call_id") or item.get("id") or new_call_id()),
                    name=str(item.get("name") or ""),
                )
            )
            calls += 1
    return events


def response_events(response: Mapping[str, Any], provider: str = "") -> list[ProviderEvent]:
    """Every event of a whole response object: its output, ``Usage`` (if any), one ``Finish``.

    Raises ``ProviderError`` for a ``failed`` response.
    """
    if response.get("status") == "failed" or response.get("error"):
        raise response_error(provider, response.get("error"))
    events = output_events(response)
    usage = usage_of(response)
    if usage is not None:
        events.append(usage)
    has_calls = any(isinstance(event, ToolCallDelta) for event in events)
    events.append(Finish(finish_reason(response, has_calls)))
    return events


def usage_of(response: Mapping[str, Any]) -> Usage | None:
    """``Usage`` from a response's ``usage`` (``input_tokens`` / ``output_tokens``), if any."""
    usage = response.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(token_count(usage.get("input_tokens")), token_count(usage.get("output_tokens")))


def finish_reason(response: Mapping[str, Any], has_calls: bool) -> str:
    """``incomplete`` for ``max_output_tokens`` → ``length``, for ``content_filter`` →
    ``content_filter`` (any other reason → ``length``); otherwise ``tool_calls`` if the
    response called tools, else ``stop``."""
    if response.get("status") == "incomplete":
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


def response_error(provider: str, error: object) -> ProviderError:
    """The ``ProviderError`` for a Responses ``error`` object (``{code, message}``):
    ``rate_limit_exceeded`` → rate_limited; ``context_length_exceeded`` and the request's own
    faults (``invalid_*``, ``image_*``, ...) → bad_request; ``server_error`` and the rest →
    upstream."""
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        if code.startswith(_BAD_REQUEST_CODES):
            # Say it in the words ``error_from_event`` reads as the request's fault.
            error = {**error, "type": "invalid_request_error"}
    return error_from_event(provider, error)


def _parts(message: ChatMessage, provider: str) -> list[JSONObject]:
    assistant = message["role"] == "assistant"
    text_type = "output_text" if assistant else "input_text"
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": text_type, "text": content}] if content else []
    parts: list[JSONObject] = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            text = part.get("text")
            if isinstance(text, str) and text:
                parts.append({"type": text_type, "text": text})
        elif kind == "image_url" and not assistant:
            image = part.get("image_url")
            detail = image.get("detail") if isinstance(image, dict) else None
            parts.append(
                {
                    "type": "input_image",
                    "image_url": image_url(part, provider),
                    "detail": detail if isinstance(detail, str) else "auto",
                }
            )
        else:
            raise bad_request(provider, f"Unsupported content part type {kind!r} for Responses")
    return parts


def _tool(function: JSONObject) -> JSONObject:
    tool: JSONObject = {"type": "function", "name": function.get("name")}
    if function.get("description"):
        tool["description"] = function["description"]
    tool["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
    tool["strict"] = function.get("strict") is True
    return tool


def _text_format(response_format: object) -> JSONObject | None:
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind != "json_schema":
        return None
    schema = response_format.get("json_schema")
    schema = schema if isinstance(schema, dict) else {}
    text_format: JSONObject = {
        "type": "json_schema",
        "name": schema.get("name") or "response",
        "schema": schema.get("schema") or {"type": "object"},
        "strict": schema.get("strict") is True,
    }
    if schema.get("description"):
        text_format["description"] = schema["description"]
    return text_format
