"""The fake upstream's Gemini answers: ``GenerateContentResponse`` chunks and errors. Pure.

Stream (``?alt=sse``, ``data:`` events only): one chunk per text token (``candidates[0].content.
parts[0].text``), then one chunk per tool call (a ``functionCall`` part with ``args`` parsed from
the script's arguments, and the call's ``id`` when the script gives one), then the end marker: a
last chunk with ``finishReason`` (the script's ``finish_reason``, else ``STOP``) and the whole
``usageMetadata``. Gemini itself has no end marker; here the ``no_done`` fault (and
``omit_finish``, for the reason only) leaves that last chunk out (``include_usage: false`` its
usage). Every chunk before it carries ``usageMetadata.promptTokenCount``. The ``error_event`` fault
sends ``{"error": {code, message, status}}`` (``status`` = ``error_type``, else ``INTERNAL``).

Whole answers: ``:generateContent`` (and ``force_json``) → one response object;
``:streamGenerateContent`` without ``alt=sse`` → a JSON array of the chunks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from gateway.testing.fake_upstream_script import Script, Step, assemble_steps, frame

__all__ = ["gemini_chunks", "gemini_error", "gemini_response", "gemini_stream"]

# Google's canonical statuses for the HTTP statuses a script may answer.
_STATUSES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
    404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}  # fmt: skip
_CODES = {status: code for code, status in _STATUSES.items()}


def gemini_chunks(script: Script, request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every chunk of the answer, the last one with the finish reason and usage."""
    model = str(request.get("model", "fake"))
    prompt = (
        {"promptTokenCount": script.prompt_tokens} if script.include_usage is not False else None
    )
    chunks = [_chunk(model, [{"text": piece}], prompt) for piece in script.pieces()]
    for call in script.tool_calls:
        function_call: dict[str, Any] = {"name": call.name, "args": json.loads(call.arguments)}
        if call.id:
            function_call["id"] = call.id
        chunks.append(_chunk(model, [{"functionCall": function_call}], prompt))
    usage: dict[str, Any] | None = None
    if script.include_usage is not False:
        completion = script.completion_tokens
        usage = {
            "promptTokenCount": script.prompt_tokens,
            "candidatesTokenCount": completion,
            "totalTokenCount": script.prompt_tokens + completion,
        }
    last = _chunk(model, [{"text": ""}], usage)
    if not script.omit_finish:
        last["candidates"][0]["finishReason"] = script.finish_reason or "STOP"
    chunks.append(last)
    return chunks


def gemini_stream(script: Script, request: Mapping[str, Any]) -> Iterator[Step]:
    """The steps of a ``streamGenerateContent?alt=sse`` answer for ``script``."""
    *content, last = gemini_chunks(script, request)
    return assemble_steps(
        script,
        opening=[],
        content=[frame(chunk, script) for chunk in content],
        closing=[],
        end=[frame(last, script)],
        error=frame(gemini_error(script), script),
    )


def gemini_response(script: Script, request: Mapping[str, Any]) -> dict[str, Any]:
    """A whole ``generateContent`` answer for ``script``."""
    chunks = gemini_chunks(script, request)
    parts: list[dict[str, Any]] = []
    text = "".join(script.pieces())
    if text:
        parts.append({"text": text})
    for chunk in chunks:
        parts.extend(p for p in chunk["candidates"][0]["content"]["parts"] if "functionCall" in p)
    whole = chunks[-1]
    whole["candidates"][0]["content"]["parts"] = parts
    return whole


def gemini_error(script: Script, status: int | None = None) -> dict[str, Any]:
    """Gemini's error document ``{"error": {code, message, status}}``: for an HTTP ``status``,
    or, without one, for an error inside the stream (its code from ``error_type``)."""
    name = script.error_type or _STATUSES.get(status or 500, "INTERNAL")
    code = status if status is not None else _CODES.get(name, 500)
    return {"error": {"code": code, "message": script.error_message, "status": name}}


def _chunk(model: str, parts: list[dict[str, Any]], usage: dict[str, Any] | None) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
        "modelVersion": model,
    }
    if usage is not None:
        chunk["usageMetadata"] = usage
    return chunk
