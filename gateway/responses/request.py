"""Validating a ``POST /v1/responses`` body. Pure: a parsed JSON document in, a
``ResponsesRequest`` or an ``InvalidRequest`` (400, OpenAI body, naming the field) out.

Input items come out normalised (see ``gateway.responses.items``): every message has a ``type``,
an ``id`` and a list of typed content parts; ``item_reference`` items stay as they are, to be
resolved against stored responses by the route. Tools the gateway cannot offer (``web_search``,
``file_search``, ``namespace``, ``computer_use_preview``, ...) are accepted and kept for the echo,
but only function tools reach the model. Fields the gateway accepts and ignores: ``include``,
``prompt_cache_key``, ``client_metadata``, ``reasoning.summary``, ``service_tier``, ``truncation``,
``max_tool_calls``, ``background: false``, ``stream_options``, ``safety_identifier``; unknown
fields are ignored too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.http.chat_request import ImageBudget, check_image, is_int, is_number, request_model
from gateway.responses.items import new_id
from gateway.types import JSONObject

MISSING_USER = "Missing user message in `input`."
MAX_METADATA = 16
_ROLES = ("user", "assistant", "system", "developer")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    """A validated request. ``tools`` is every tool as given (echoed in the response);
    ``function_tools`` the function tools, flat, that reach the model."""

    model: str
    input: list[JSONObject]
    instructions: str | None = None
    tools: list[JSONObject] = field(default_factory=list)
    function_tools: list[JSONObject] = field(default_factory=list)
    tool_choice: str | JSONObject = "auto"
    parallel_tool_calls: bool = True
    stream: bool = False
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text_format: JSONObject | None = None
    user: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    metadata: dict[str, str] = field(default_factory=dict)
    reasoning_effort: str | None = None


def _fail(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


def parse_responses_request(raw: Any) -> ResponsesRequest:
    """Validate ``raw`` (already JSON-decoded). Raises ``InvalidRequest``."""
    body, model = request_model(raw)
    if body.get("background") is True:
        raise _fail("`background` responses are not supported.", "background")
    items = _input(body.get("input"))
    tools, function_tools = _tools(body.get("tools"))
    return ResponsesRequest(
        model=model,
        input=items,
        instructions=_optional_string(body, "instructions"),
        tools=tools,
        function_tools=function_tools,
        tool_choice=_tool_choice(body.get("tool_choice"), function_tools),
        parallel_tool_calls=_boolean(body, "parallel_tool_calls", True),
        stream=_boolean(body, "stream", False),
        max_output_tokens=_positive_int(body, "max_output_tokens"),
        temperature=_number(body, "temperature", 0.0, 2.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        text_format=_text_format(body.get("text")),
        user=_optional_string(body, "user") or None,
        previous_response_id=_optional_string(body, "previous_response_id") or None,
        store=_boolean(body, "store", True),
        metadata=_metadata(body.get("metadata")),
        reasoning_effort=_reasoning_effort(body.get("reasoning")),
    )


def _input(raw: Any) -> list[JSONObject]:
    if isinstance(raw, str):
        if not raw.strip():
            raise _fail(MISSING_USER, "input")
        return [_message_item("user", [{"type": "input_text", "text": raw}], None)]
    if not isinstance(raw, list):
        raise _fail("`input` must be a string or an array of input items.", "input")
    images = ImageBudget()
    return [_item(item, f"input[{i}]", images) for i, item in enumerate(raw)]


def _item(raw: Any, where: str, images: ImageBudget) -> JSONObject:
    if not isinstance(raw, dict):
        raise _fail(f"`{where}` must be an object.", "input")
    kind = raw.get("type")
    if kind is None and "role" in raw:
        kind = "message"  # the short form: {"role": ..., "content": ...}
    if kind == "message":
        return _message(raw, where, images)
    if kind == "function_call":
        call_id, name = _string(raw, "call_id", where), _string(raw, "name", where)
        arguments = raw.get("arguments", "")
        if not isinstance(arguments, str):
            raise _fail(f"`{where}.arguments` must be a string.", "input")
        return {
            "type": "function_call",
            "id": _item_id(raw, where, "fc"),
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }
    if kind == "function_call_output":
        call_id = _string(raw, "call_id", where)
        return {
            "type": "function_call_output",
            "id": _item_id(raw, where, "fco"),
            "call_id": call_id,
            "output": _output(raw.get("output"), where, images),
        }
    if kind == "reasoning":
        return {**raw, "id": _item_id(raw, where, "rs")}
    if kind == "item_reference":
        return {"type": "item_reference", "id": _string(raw, "id", where)}
    raise _fail(
        f"`{where}.type` {kind!r} is not supported; use message, function_call, "
        "function_call_output, reasoning or item_reference.",
        "input",
    )


def _message(raw: JSONObject, where: str, images: ImageBudget) -> JSONObject:
    role = raw.get("role")
    if role not in _ROLES:
        raise _fail(f"`{where}.role` must be one of {', '.join(_ROLES)}.", "input")
    content = raw.get("content")
    default = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts: list[JSONObject] = [{"type": default, "text": content}]
    elif isinstance(content, list):
        parts = [_part(part, f"{where}.content[{j}]", images) for j, part in enumerate(content)]
    else:
        raise _fail(f"`{where}.content` must be a string or an array of content parts.", "input")
    return _message_item(role, parts, _item_id(raw, where, "msg"))


def _message_item(role: str, parts: list[JSONObject], item_id: str | None) -> JSONObject:
    return {
        "type": "message",
        "id": item_id or new_id("msg"),
        "role": role,
        "content": parts,
        "status": "completed",
    }


def _part(raw: Any, where: str, images: ImageBudget) -> JSONObject:
    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise _fail(f"`{where}` must be an object with a string `type`.", "input")
    kind = raw["type"]
    if kind in ("input_text", "output_text", "text", "summary_text", "refusal"):
        text = raw.get("refusal") if kind == "refusal" else raw.get("text")
        if not isinstance(text, str):
            raise _fail(f"`{where}.text` must be a string.", "input")
        if kind in ("output_text", "refusal"):
            return {"type": "output_text", "text": text, "annotations": []}
        return {"type": "input_text", "text": text}
    if kind == "input_image":
        url = raw.get("image_url")
        if isinstance(url, dict):
            url = url.get("url")
        if not isinstance(url, str):
            if raw.get("file_id") is not None:
                raise _fail(f"`{where}`: file ids are not supported; send a data: URI.", "input")
            raise _fail(f"`{where}.image_url` must be a string.", "input")
        check_image(url, where, images, "input")
        part: JSONObject = {"type": "input_image", "image_url": url}
        if isinstance(raw.get("detail"), str):
            part["detail"] = raw["detail"]
        return part
    raise _fail(
        f"`{where}.type` {kind!r} is not supported; use input_text, input_image or output_text.",
        "input",
    )


def _output(raw: Any, where: str, images: ImageBudget) -> str | list[JSONObject]:
    """A function call's output: a string; content parts of text only are joined into one,
    parts with an image stay parts (a client's tool can return one: Codex's ``view_image``)."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts = [_part(part, f"{where}.output[{j}]", images) for j, part in enumerate(raw)]
        if any(part["type"] == "input_image" for part in parts):
            return parts
        return "".join(part["text"] for part in parts)
    raise _fail(f"`{where}.output` must be a string or an array of content parts.", "input")


def _item_id(raw: JSONObject, where: str, prefix: str) -> str:
    value = raw.get("id")
    if value is None:
        return new_id(prefix)
    if not isinstance(value, str) or not value:
        raise _fail(f"`{where}.id` must be a non-empty string.", "input")
    return value


def _string(raw: JSONObject, key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise _fail(f"`{where}.{key}` must be a non-empty string without NUL characters.", "input")
    return value


def _tools(raw: Any) -> tuple[list[JSONObject], list[JSONObject]]:
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        raise _fail("`tools` must be an array.", "tools")
    tools: list[JSONObject] = []
    functions: list[JSONObject] = []
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _fail(f"`tools[{i}]` must be an object with a string `type`.", "tools")
        tools.append(tool)
        if tool["type"] != "function":
            continue  # offered by the client's platform, not by this gateway: not sent
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"`tools[{i}].name` must be a non-empty string.", "tools")
        function: JSONObject = {"type": "function", "name": name}
        description = tool.get("description")
        if description is not None:
            if not isinstance(description, str):
                raise _fail(f"`tools[{i}].description` must be a string.", "tools")
            function["description"] = description
        parameters = tool.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, dict):
                raise _fail(f"`tools[{i}].parameters` must be an object.", "tools")
            function["parameters"] = parameters
        strict = tool.get("strict")
        if strict is not None:
            if not isinstance(strict, bool):
                raise _fail(f"`tools[{i}].strict` must be a boolean.", "tools")
            function["strict"] = strict
        functions.append(function)
    return tools, functions


def _tool_choice(raw: Any, functions: list[JSONObject]) -> str | JSONObject:
    if raw is None:
        return "auto"
    if isinstance(raw, str):
        if raw not in ("none", "auto", "required"):
            raise _fail("`tool_choice` must be none, auto, required or an object.", "tool_choice")
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function":
        if raw.get("name") not in {f["name"] for f in functions}:
            raise _fail("`tool_choice.name` must name one of the function `tools`.", "tool_choice")
        return {"type": "function", "name": raw["name"]}
    if isinstance(raw, dict) and isinstance(raw.get("type"), str):
        return "auto"  # a choice of a tool kind the gateway does not offer: the model decides
    raise _fail("`tool_choice` must be none, auto, required or an object.", "tool_choice")


def _text_format(raw: Any) -> JSONObject | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail("`text` must be an object.", "text")
    fmt = raw.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise _fail("`text.format.type` must be one of text, json_object, json_schema.", "text")
    if fmt["type"] == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise _fail("`text.format.schema` must be an object.", "text")
        if not isinstance(fmt.get("name"), str) or not fmt["name"]:
            raise _fail("`text.format.name` must be a non-empty string.", "text")
    return dict(fmt)


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail("`metadata` must be an object of strings.", "metadata")
    if len(raw) > MAX_METADATA:
        raise _fail(f"`metadata` has more than {MAX_METADATA} keys.", "metadata")
    for key, value in raw.items():
        if len(key) > 64:
            raise _fail("`metadata` keys must be at most 64 characters.", "metadata")
        if not isinstance(value, str) or len(value) > 512:
            raise _fail("`metadata` values must be strings of at most 512 characters.", "metadata")
    return dict(raw)


def _reasoning_effort(raw: Any) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail("`reasoning` must be an object.", "reasoning")
    effort = raw.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise _fail(f"`reasoning.effort` must be one of {', '.join(_EFFORTS)}.", "reasoning")
    return effort if isinstance(effort, str) else None


def _optional_string(body: JSONObject, key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _fail(f"`{key}` must be a string.", key)
    return value


def _boolean(body: JSONObject, key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _fail(f"`{key}` must be a boolean.", key)
    return value


def _positive_int(body: JSONObject, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise _fail(f"`{key}` must be a positive integer.", key)
    return int(value)


def _number(body: JSONObject, key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if not is_number(value) or not low <= value <= high or not math.isfinite(value):
        raise _fail(f"`{key}` must be a number between {low:g} and {high:g}.", key)
    return float(value)
