"""The fake upstream's answers in each API's shape: OpenAI chunks and completions, Anthropic
events and messages, error bodies (for every API). Pure: documents and ``Step`` lists from a
``Script``. Responses, Gemini, Ollama and embeddings answers have their own modules."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from gateway.testing.fake_upstream_gemini import gemini_error
from gateway.testing.fake_upstream_script import (
    Script,
    Step,
    assemble_steps,
    call_id,
    fragments,
    frame,
)

__all__ = [
    "anthropic_message",
    "anthropic_stream",
    "error_response",
    "openai_completion",
    "openai_stream",
]

_HTML_PAGE = (
    "<html>\r\n<head><title>{status} Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>{status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def openai_stream(script: Script, request: Mapping[str, Any]) -> Iterator[Step]:
    """The steps of an OpenAI ``chat.completion.chunk`` stream for ``script``."""
    model = str(request.get("model", "fake"))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**_openai_head(model, "chat.completion.chunk"), "choices": [choice]}

    def content() -> Iterator[dict[str, Any]]:  # made as it is sent
        for piece in script.iter_pieces():
            yield chunk({"content": piece})
        for index, call in enumerate(script.tool_calls):
            first = {"index": index, "id": call_id(call, index, "call"), "type": "function"}
            first["function"] = {"name": call.name, "arguments": ""}
            yield chunk({"tool_calls": [first]})
            for fragment in fragments(call.arguments):
                delta = {"index": index, "function": {"arguments": fragment}}
                yield chunk({"tool_calls": [delta]})

    closing: list[dict[str, Any]] = []
    if not script.omit_finish:
        closing.append(chunk({}, script.finish_reason or _openai_reason(script)))
    include_usage = script.include_usage
    if include_usage is None:
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    if include_usage:
        closing.append({**_openai_head(model, "chat.completion.chunk"), "choices": []})
        closing[-1]["usage"] = _openai_usage(script)
    error = {
        "error": {"message": script.error_message, "type": script.error_type or "server_error"}
    }
    return assemble_steps(
        script,
        opening=[frame(chunk({"role": "assistant", "content": ""}), script)],
        content=(frame(doc, script) for doc in content()),
        closing=[frame(doc, script) for doc in closing],
        end=[frame("[DONE]", script)],
        error=frame(error, script),
    )


def openai_completion(script: Script, request: Mapping[str, Any]) -> dict[str, Any]:
    """A whole ``chat.completion`` document for ``script``."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(script.pieces()) or None}
    if script.tool_calls:
        message["tool_calls"] = [
            {
                "id": call_id(call, index, "call"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for index, call in enumerate(script.tool_calls)
        ]
    choice = {"index": 0, "message": message, "finish_reason": _openai_reason(script)}
    head = _openai_head(str(request.get("model", "fake")), "chat.completion")
    return {**head, "choices": [choice], "usage": _openai_usage(script)}


def anthropic_stream(script: Script, request: Mapping[str, Any]) -> Iterator[Step]:
    """The steps of an Anthropic Messages event stream for ``script``."""
    message = _anthropic_message_head(request)
    message["usage"] = {"input_tokens": script.prompt_tokens, "output_tokens": 1}
    opening = [frame({"type": "message_start", "message": message}, script, "message_start")]
    content: list[bytes] = []
    block = 0
    if script.pieces():
        start = {"type": "content_block_start", "index": 0, "content_block": _text_block("")}
        opening.append(frame(start, script, "content_block_start"))
        opening.append(frame({"type": "ping"}, script, "ping"))
        for piece in script.pieces():
            delta = {"type": "text_delta", "text": piece}
            content.append(_block_event("content_block_delta", 0, script, delta=delta))
        content.append(_block_event("content_block_stop", 0, script))
        block = 1
    for index, call in enumerate(script.tool_calls, start=block):
        tool = {"type": "tool_use", "id": call_id(call, index, "toolu"), "name": call.name}
        content.append(_block_event("content_block_start", index, script, content_block=tool))
        for fragment in fragments(call.arguments):
            delta = {"type": "input_json_delta", "partial_json": fragment}
            content.append(_block_event("content_block_delta", index, script, delta=delta))
        content.append(_block_event("content_block_stop", index, script))
    reason = None if script.omit_finish else script.finish_reason or _anthropic_reason(script)
    delta_event: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": None},
    }
    if script.include_usage is not False:
        delta_event["usage"] = {"output_tokens": script.completion_tokens}
    error_type = script.error_type or "overloaded_error"
    error = {"type": "error", "error": {"type": error_type, "message": script.error_message}}
    return assemble_steps(
        script,
        opening=opening,
        content=content,
        closing=[frame(delta_event, script, "message_delta")],
        end=[frame({"type": "message_stop"}, script, "message_stop")],
        error=frame(error, script, "error"),
    )


def anthropic_message(script: Script, request: Mapping[str, Any]) -> dict[str, Any]:
    """A whole (non-streamed) Anthropic ``message`` document for ``script``."""
    message = _anthropic_message_head(request)
    text = "".join(script.pieces())
    blocks: list[dict[str, Any]] = [_text_block(text)] if text else []
    for index, call in enumerate(script.tool_calls, start=len(blocks)):
        tool_id = call_id(call, index, "toolu")
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_id,
                "name": call.name,
                "input": json.loads(call.arguments),
            }
        )
    message["content"] = blocks
    message["stop_reason"] = script.finish_reason or _anthropic_reason(script)
    message["usage"] = {
        "input_tokens": script.prompt_tokens,
        "output_tokens": script.completion_tokens,
    }
    return message


def error_response(
    script: Script, api: Literal["openai", "anthropic", "google", "ollama"]
) -> tuple[str, bytes]:
    """The content type and body of the error answer ``script.status``, in ``api``'s shape."""
    if script.error_body is not None:
        return script.error_content_type, script.error_body.encode()
    if "html" in script.error_content_type:
        return script.error_content_type, _HTML_PAGE.format(status=script.status).encode()
    if api == "google":
        document: dict[str, Any] = gemini_error(script, script.status)
    elif api == "ollama":
        document = {"error": script.error_message}
    elif api == "anthropic":
        detail = {"type": script.error_type or "api_error", "message": script.error_message}
        document = {"type": "error", "error": detail}
    else:
        document = {
            "error": {
                "message": script.error_message,
                "type": script.error_type or "invalid_request_error",
                "param": None,
                "code": None,
            }
        }
    return script.error_content_type, json.dumps(document).encode()


def _block_event(kind: str, index: int, script: Script, **fields: Any) -> bytes:
    return frame({"type": kind, "index": index, **fields}, script, kind)


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _openai_head(model: str, kind: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": kind, "created": 0, "model": model}


def _openai_usage(script: Script) -> dict[str, int]:
    completion = script.completion_tokens
    return {
        "prompt_tokens": script.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": script.prompt_tokens + completion,
    }


def _openai_reason(script: Script) -> str:
    return script.finish_reason or ("tool_calls" if script.tool_calls else "stop")


def _anthropic_reason(script: Script) -> str:
    return "tool_use" if script.tool_calls else "end_turn"


def _anthropic_message_head(request: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": str(request.get("model", "fake")),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
