"""Validating a chat completions request body. Pure: a parsed JSON document in, a
``ChatRequest`` or an ``InvalidRequest`` (400, OpenAI body, naming the field) out."""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.types import ChatMessage, JSONObject, ToolCall

MAX_IMAGES = 8
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_IMAGES_TOTAL_BYTES = 20 * 1024 * 1024
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_ROLES = ("system", "developer", "user", "assistant", "tool")
_TEXT_PARTS = ("text", "input_text")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated request. ``messages`` excludes system/developer messages, whose text is
    ``system`` (joined with blank lines)."""

    model: str
    messages: list[ChatMessage]
    system: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    user: str | None = None


def _fail(message: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def request_model(body: Any) -> tuple[dict[str, Any], str]:
    """An API request's body checked to be a JSON object, and its ``model`` (a string,
    ``openclaw`` when absent). Raises ``InvalidRequest``."""
    if not isinstance(body, dict):
        raise _fail("The request body must be a JSON object.")
    model = body.get("model")
    if model is None:
        model = "openclaw"
    elif not isinstance(model, str):
        raise _fail("`model` must be a string.", "model")
    return body, model


def parse_chat_request(raw: Any) -> ChatRequest:
    """Validate ``raw`` (already JSON-decoded). Raises ``InvalidRequest``."""
    body, model = request_model(raw)
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise _fail("`messages` must be a non-empty array.", "messages")
    system_parts: list[str] = []
    messages: list[ChatMessage] = []
    images = ImageBudget()
    for i, raw in enumerate(raw_messages):
        message = _message(raw, f"messages[{i}]", images)
        if message["role"] in ("system", "developer"):
            text = _plain_text(message)
            if text:
                system_parts.append(text)
        else:
            messages.append(message)
    if not any(m["role"] in ("user", "tool") and _has_content(m) for m in messages):
        raise _fail("Missing user message in `messages`.", "messages")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _fail("`stream` must be a boolean.", "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise _fail("`stream_options` must be an object.", "stream_options")
        flag = options.get("include_usage", False)
        if not isinstance(flag, bool):
            raise _fail("`stream_options.include_usage` must be a boolean.", "stream_options")
        include_usage = flag
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _fail("`user` must be a string.", "user")
    return ChatRequest(
        model=model,
        messages=messages,
        system="\n\n".join(system_parts) or None,
        params=_params(body),
        stream=stream,
        include_usage=include_usage,
        user=user or None,
    )


def _has_content(message: ChatMessage) -> bool:
    """Whether the message says something: non-blank text, or an image."""
    content = message["content"]
    if isinstance(content, str):
        return bool(content.strip())
    return any(part["type"] != "text" or part["text"].strip() for part in content or ())


def _plain_text(message: ChatMessage) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    return "".join(str(p.get("text", "")) for p in content if p.get("type") in _TEXT_PARTS)


@dataclass(slots=True)
class ImageBudget:
    count: int = 0
    total: int = 0


def _message(raw: Any, where: str, images: ImageBudget) -> ChatMessage:
    if not isinstance(raw, dict):
        raise _fail(f"`{where}` must be an object.", "messages")
    role = raw.get("role")
    if not isinstance(role, str):
        raise _fail(f"`{where}.role` must be a string.", "messages")
    if role not in _ROLES:
        raise _fail(f"`{where}.role` must be one of {', '.join(_ROLES)}; got {role!r}.", "messages")
    content = raw.get("content")
    message: ChatMessage = {"role": role, "content": None}
    if isinstance(content, str):
        message["content"] = content
    elif isinstance(content, list):
        message["content"] = [
            _part(part, f"{where}.content[{j}]", images) for j, part in enumerate(content)
        ]
    elif content is not None:
        raise _fail(
            f"`{where}.content` must be a string, an array of content parts or null.", "messages"
        )
    name = raw.get("name")
    if name is not None:
        if not isinstance(name, str) or "\x00" in name:
            raise _fail(f"`{where}.name` must be a string without NUL characters.", "messages")
        message["name"] = name
    if role == "assistant" and raw.get("tool_calls") is not None:
        message["tool_calls"] = _tool_calls(raw["tool_calls"], f"{where}.tool_calls")
    if role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id or "\x00" in call_id:
            raise _fail(
                f"`{where}.tool_call_id` must be a non-empty string without NUL characters.",
                "messages",
            )
        message["tool_call_id"] = call_id
    if content is None and role != "assistant":
        raise _fail(f"`{where}.content` is required for role {role!r}.", "messages")
    return message


def _part(part: Any, where: str, images: ImageBudget) -> JSONObject:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise _fail(f"`{where}` must be an object with a string `type`.", "messages")
    kind = part["type"]
    if kind in _TEXT_PARTS:
        if not isinstance(part.get("text"), str):
            raise _fail(f"`{where}.text` must be a string.", "messages")
        return {"type": "text", "text": part["text"]}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise _fail(f"`{where}.image_url.url` must be a string.", "messages")
        check_image(url, where, images)
        out: JSONObject = {"type": "image_url", "image_url": {"url": url}}
        if isinstance(image, dict) and isinstance(image.get("detail"), str):
            out["image_url"]["detail"] = image["detail"]
        return out
    raise _fail(f"`{where}.type` {kind!r} is not supported; use text or image_url.", "messages")


def check_image(url: str, where: str, images: ImageBudget, param: str = "messages") -> None:
    """Check a ``data:`` image URI against the image rules and the request's budget."""
    if not url.startswith("data:"):
        raise _fail(
            f"`{where}`: remote image URLs are not supported; send the image as a data: URI.",
            param,
        )
    header, sep, payload = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not sep or encoding != "base64":
        raise _fail(f"`{where}`: image data URIs must be base64-encoded.", param)
    if media_type.lower() not in IMAGE_TYPES:
        raise _fail(
            f"`{where}`: unsupported image type {media_type!r}; use jpeg, png, gif or webp.",
            param,
        )
    images.count += 1
    if images.count > MAX_IMAGES:
        raise _fail(f"Too many images: at most {MAX_IMAGES} per request.", param)
    size = len(payload) * 3 // 4  # decoded size, without decoding 10 MB on the event loop
    if size > MAX_IMAGE_BYTES:
        raise _fail(f"`{where}`: image larger than 10 MB.", param)
    images.total += size
    if images.total > MAX_IMAGES_TOTAL_BYTES:
        raise _fail("Images larger than 20 MB in total.", param)
    # Check the head of the data only: decoding 10 MB here would stall the event loop.
    try:
        base64.b64decode(payload[:1024], validate=True)
    except (binascii.Error, ValueError):
        raise _fail(f"`{where}`: invalid base64 image data.", param) from None


def _tool_calls(raw: Any, where: str) -> list[ToolCall]:
    if not isinstance(raw, list):
        raise _fail(f"`{where}` must be an array.", "messages")
    calls: list[ToolCall] = []
    for i, call in enumerate(raw):
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(call, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
        ):
            raise _fail(
                f"`{where}[{i}]` must be an object with a string `id` and `function.name`.",
                "messages",
            )
        arguments = fn.get("arguments", "")
        if not isinstance(arguments, str):
            raise _fail(f"`{where}[{i}].function.arguments` must be a string.", "messages")
        calls.append(
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": arguments},
            }
        )
    return calls


def _params(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields forwarded to the provider, each validated."""
    params: dict[str, Any] = {}
    n = body.get("n")
    if n is not None and (not is_int(n) or n < 1):
        raise _fail("`n` must be a positive integer.", "n")
    if n is not None and n > 1:
        raise _fail("`n` greater than 1 is not supported.", "n")
    for key, low, high in (
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ):
        value = body.get(key)
        if value is None:
            continue
        if not is_number(value) or not low <= value <= high:
            raise _fail(f"`{key}` must be a number between {low:g} and {high:g}.", key)
        params[key] = value
    # Kept under the client's own name: newer OpenAI models accept only max_completion_tokens.
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not is_int(value) or value < 1:
            raise _fail(f"`{key}` must be a positive integer.", key)
        if "max_completion_tokens" not in params:
            params[key] = value
    seed = body.get("seed")
    if seed is not None:
        if not is_int(seed):
            raise _fail("`seed` must be an integer.", "seed")
        params["seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if (
            not isinstance(stop, list)
            or len(stop) > 4
            or not all(isinstance(s, str) and s for s in stop)
        ):
            raise _fail("`stop` must be a string or an array of up to 4 strings.", "stop")
        params["stop"] = stop
    _response_format(body.get("response_format"), params)
    _tools(body, params)
    return params


def _response_format(value: Any, params: dict[str, Any]) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or value.get("type") not in (
        "text",
        "json_object",
        "json_schema",
    ):
        raise _fail(
            "`response_format.type` must be one of text, json_object, json_schema.",
            "response_format",
        )
    if value["type"] == "json_schema" and not isinstance(value.get("json_schema"), dict):
        raise _fail("`response_format.json_schema` must be an object.", "response_format")
    params["response_format"] = value


def _tools(body: Mapping[str, Any], params: dict[str, Any]) -> None:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise _fail("`tools` must be an array.", "tools")
        for i, tool in enumerate(tools):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or not isinstance(fn, dict)
                or not isinstance(fn.get("name"), str)
                or not fn["name"]
            ):
                raise _fail(
                    f'`tools[{i}]` must be {{"type": "function", "function": {{"name": ...}}}}.',
                    "tools",
                )
            if fn.get("parameters") is not None and not isinstance(fn["parameters"], dict):
                raise _fail(f"`tools[{i}].function.parameters` must be an object.", "tools")
            names.add(fn["name"])
        if tools:
            params["tools"] = tools
    choice = body.get("tool_choice")
    if choice is not None:
        if isinstance(choice, str):
            if choice not in ("none", "auto", "required"):
                raise _fail(
                    "`tool_choice` must be none, auto, required or an object.", "tool_choice"
                )
        elif isinstance(choice, dict):
            fn = choice.get("function")
            if (
                choice.get("type") != "function"
                or not isinstance(fn, dict)
                or fn.get("name") not in names
            ):
                raise _fail("`tool_choice.function.name` must name one of `tools`.", "tool_choice")
        else:
            raise _fail("`tool_choice` must be none, auto, required or an object.", "tool_choice")
        params["tool_choice"] = choice
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        if not isinstance(parallel, bool):
            raise _fail("`parallel_tool_calls` must be a boolean.", "parallel_tool_calls")
        params["parallel_tool_calls"] = parallel
