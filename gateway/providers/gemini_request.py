"""Translating a ``ModelRequest`` into a Gemini ``streamGenerateContent`` request. Pure.

Messages → ``contents`` (roles ``user`` and ``model``):

- ``user`` → ``user``: text parts → ``{text}``; ``image_url`` parts (base64 ``data:`` URIs only:
  Gemini cannot fetch a URL) → ``{inlineData: {mimeType, data}}``;
- ``assistant`` → ``model``: its text, then each tool call as ``{functionCall: {name, args}}``
  (``args`` the parsed JSON arguments; arguments that are not a JSON object are a bad request).
  The first call of a turn carries Google's documented ``skip_thought_signature_validator``
  ``thoughtSignature``, since the gateway does not keep Gemini's real signatures and Gemini 3
  refuses replayed calls without one (not sent to ``gemini-1.x`` / ``gemini-2.x`` models);
- ``tool`` → ``user``: ``{functionResponse: {name, response}}``, ``name`` from the assistant call
  with that ``tool_call_id``, ``response`` the result parsed when it is a JSON object, else
  ``{"content": <text>}``;
- ``system`` / ``developer`` messages join ``request.system`` in ``systemInstruction``;
- consecutive turns of the same role are merged (Gemini wants them alternating); a turn left
  without parts is dropped.

Parameters → ``generationConfig``: ``temperature``, ``top_p`` → ``topP``, the output limit →
``maxOutputTokens``, ``stop`` → ``stopSequences``, ``seed``; ``response_format`` ``json_object`` →
``responseMimeType: "application/json"``, ``json_schema`` → the same plus ``responseSchema``;
``reasoning_effort`` → ``thinkingConfig`` (``thinkingBudget`` for 2.x models: none 0, minimal 512,
low 1024, medium 8192, high and xhigh 24576; ``thinkingLevel`` for later ones, ``none`` and
``xhigh`` read as ``minimal`` and ``high``). Function tools → one ``{functionDeclarations}`` tool
(schemas cleaned by ``gemini_schema``; a tool without properties gets no ``parameters``);
``tool_choice`` → ``toolConfig.functionCallingConfig`` (``auto`` → AUTO, ``none`` → NONE,
``required`` → ANY, a named function → ANY with ``allowedFunctionNames``). Not sent (no Gemini
equivalent, or not accepted by every model): ``presence_penalty``, ``frequency_penalty``,
``parallel_tool_calls``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from gateway.providers.base import ModelRequest, max_output_tokens
from gateway.providers.chat_parts import (
    bad_request,
    call_arguments,
    data_uri,
    function_tools,
    image_url,
    reasoning_effort,
    text_of,
    tool_call_id,
    tool_names,
)
from gateway.providers.gemini_schema import gemini_schema
from gateway.types import ChatMessage, JSONObject

__all__ = ["SKIP_SIGNATURE", "gemini_request", "gemini_url", "translate_contents"]

SKIP_SIGNATURE = "skip_thought_signature_validator"

_OLD_MODEL = re.compile(r"gemini-[12][.-]")
_BUDGETS = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 24576}
_LEVELS = {"none": "minimal", "xhigh": "high"}
_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


def gemini_url(base_url: str, model: str) -> str:
    """``{root}/v1beta/models/{model}:streamGenerateContent?alt=sse``, ``base_url`` given with or
    without its ``/v1beta``, ``model`` with or without ``models/``."""
    root = base_url.rstrip("/").removesuffix("/v1beta")
    name = quote(model.removeprefix("models/"), safe="-._~")
    return f"{root}/v1beta/models/{name}:streamGenerateContent?alt=sse"


def gemini_request(request: ModelRequest, provider: str = "") -> JSONObject:
    """The request body for ``request``. Raises ``ProviderError("bad_request")`` when the
    conversation cannot be expressed."""
    contents, extra_system = translate_contents(request.messages, request.model, provider)
    body: JSONObject = {"contents": contents}
    system = "\n\n".join(text for text in (request.system, *extra_system) if text)
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    declarations = [_declaration(function) for function in function_tools(request.params)]
    if declarations:
        body["tools"] = [{"functionDeclarations": declarations}]
        config = _function_calling(request.params.get("tool_choice"))
        if config is not None:
            body["toolConfig"] = {"functionCallingConfig": config}
    generation = _generation_config(request)
    if generation:
        body["generationConfig"] = generation
    return body


def translate_contents(
    messages: Sequence[ChatMessage], model: str = "", provider: str = ""
) -> tuple[list[JSONObject], list[str]]:
    """Gemini ``contents`` for chat ``messages``, plus the texts of stray system messages."""
    names = tool_names(messages)
    signed = not _OLD_MODEL.match(model.removeprefix("models/"))
    contents: list[JSONObject] = []
    system: list[str] = []
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(text_of(message.get("content"), "\n"))
            continue
        if role == "user":
            target, parts = "user", _parts(message, provider)
        elif role == "assistant":
            target, parts = "model", _parts(message, provider) + _calls(message, signed, provider)
        elif role == "tool":
            target, parts = "user", [_function_response(message, names, provider)]
        else:
            raise bad_request(provider, f"Unsupported message role {role!r} for Gemini")
        if not parts:
            continue
        if contents and contents[-1]["role"] == target:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": target, "parts": parts})
    return contents, system


def _parts(message: ChatMessage, provider: str) -> list[JSONObject]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[JSONObject] = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            text = part.get("text")
            if isinstance(text, str) and text:
                parts.append({"text": text})
        elif kind == "image_url":
            mime_type, data = data_uri(image_url(part, provider), provider)
            parts.append({"inlineData": {"mimeType": mime_type, "data": data}})
        else:
            raise bad_request(provider, f"Unsupported content part type {kind!r} for Gemini")
    return parts


def _calls(message: ChatMessage, signed: bool, provider: str) -> list[JSONObject]:
    parts: list[JSONObject] = []
    for call in message.get("tool_calls") or ():
        name = (call.get("function") or {}).get("name")
        part: JSONObject = {"functionCall": {"name": name, "args": call_arguments(call, provider)}}
        if signed and not parts:
            part["thoughtSignature"] = SKIP_SIGNATURE
        parts.append(part)
    return parts


def _function_response(message: ChatMessage, names: dict[str, str], provider: str) -> JSONObject:
    call_id = tool_call_id(message, provider)
    name = names.get(call_id)
    if name is None:
        raise bad_request(provider, f"Tool result {call_id!r} answers no assistant tool call")
    text = text_of(message.get("content"))
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    response = parsed if isinstance(parsed, dict) else {"content": text}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(function: JSONObject) -> JSONObject:
    declaration: JSONObject = {"name": function.get("name")}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = gemini_schema(function.get("parameters"))
    if isinstance(parameters, dict) and parameters.get("properties"):
        declaration["parameters"] = parameters
    return declaration


def _function_calling(choice: object) -> JSONObject | None:
    if isinstance(choice, str) and choice in _MODES:
        return {"mode": _MODES[choice]}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return {"mode": "ANY", "allowedFunctionNames": [name]}
    return None


def _generation_config(request: ModelRequest) -> JSONObject:
    params = request.params
    config: JSONObject = {}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")):
        if params.get(ours) is not None:
            config[theirs] = params[ours]
    limit = max_output_tokens(params)
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = params.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = params.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") != "text":
        config["responseMimeType"] = "application/json"
        schema = response_format.get("json_schema")
        schema = schema.get("schema") if isinstance(schema, dict) else None
        if response_format.get("type") == "json_schema" and isinstance(schema, dict):
            config["responseSchema"] = gemini_schema(schema)
    effort = reasoning_effort(params)
    if effort is not None:
        if _OLD_MODEL.match(request.model.removeprefix("models/")):
            config["thinkingConfig"] = {"thinkingBudget": _BUDGETS[effort]}
        else:
            config["thinkingConfig"] = {"thinkingLevel": _LEVELS.get(effort, effort)}
    return config
