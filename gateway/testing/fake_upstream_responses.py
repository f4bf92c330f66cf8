"""The fake upstream's OpenAI Responses answers: the event stream and the response object. Pure.

Stream (``event: <type>`` + ``data``, each with a ``sequence_number``)::

    response.created, response.in_progress                      (sent with the first token)
    response.output_item.added (message), response.content_part.added   if there is text
    response.output_text.delta …                                 one content frame per token
    response.output_text.done, response.content_part.done, response.output_item.done
    for each tool call: response.output_item.added (function_call),
        response.function_call_arguments.delta …, response.function_call_arguments.done,
        response.output_item.done
    response.completed | response.incomplete                     the end marker

Knobs: ``finish_reason`` ``length`` / ``max_output_tokens`` / ``content_filter`` make the answer
``incomplete`` with that reason (``length`` reads as ``max_output_tokens``); ``include_usage:
false`` leaves ``usage`` out; ``omit_finish`` and the ``no_done`` fault leave the end marker out;
the ``error_event`` fault sends ``response.failed`` (``error.code`` = ``error_type``, else
``server_error``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gateway.testing.fake_upstream_script import (
    Script,
    Step,
    assemble_steps,
    call_id,
    fragments,
    frame,
)

__all__ = ["responses_object", "responses_stream"]

_INCOMPLETE = {
    "length": "max_output_tokens",
    "max_output_tokens": "max_output_tokens",
    "content_filter": "content_filter",
}


def responses_stream(script: Script, request: Mapping[str, Any]) -> Iterator[Step]:
    """The steps of a Responses event stream for ``script``."""
    counter = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        return frame({"type": kind, "sequence_number": next(counter), **fields}, script, kind)

    pending = {**_head(request), "status": "in_progress", "output": [], "usage": None}
    opening = [event("response.created", response=pending)]
    opening.append(event("response.in_progress", response=pending))
    content: list[bytes] = []
    text = "".join(script.pieces())
    output_index = 0
    if text:
        message = {"type": "message", "id": "msg_fake", "role": "assistant", "content": []}
        where = {"item_id": "msg_fake", "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": []}
        opening.append(event("response.output_item.added", output_index=0, item=message))
        opening.append(event("response.content_part.added", **where, part=part))
        for piece in script.pieces():
            content.append(event("response.output_text.delta", **where, delta=piece))
        done_part = {**part, "text": text}
        content.append(event("response.output_text.done", **where, text=text))
        content.append(event("response.content_part.done", **where, part=done_part))
        done_message = {**message, "status": "completed", "content": [done_part]}
        content.append(event("response.output_item.done", output_index=0, item=done_message))
        output_index = 1
    for position, call in enumerate(script.tool_calls):
        index = output_index + position
        item = _call_item(call_id(call, position, "call"), index, call.name, "")
        where = {"item_id": item["id"], "output_index": index}
        content.append(event("response.output_item.added", output_index=index, item=item))
        for fragment in fragments(call.arguments):
            content.append(event("response.function_call_arguments.delta", **where, delta=fragment))
        content.append(
            event("response.function_call_arguments.done", **where, arguments=call.arguments)
        )
        done_item = {**item, "arguments": call.arguments, "status": "completed"}
        content.append(event("response.output_item.done", output_index=index, item=done_item))
    final = responses_object(script, request)
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    error = {"code": script.error_type or "server_error", "message": script.error_message}
    failed = {**pending, "status": "failed", "error": error}
    return assemble_steps(
        script,
        opening=opening,
        content=content,
        closing=[],
        end=[] if script.omit_finish else [event(kind, response=final)],
        error=event("response.failed", response=failed),
    )


def responses_object(script: Script, request: Mapping[str, Any]) -> dict[str, Any]:
    """The whole (final) response object for ``script``."""
    output: list[dict[str, Any]] = []
    text = "".join(script.pieces())
    if text:
        part = {"type": "output_text", "text": text, "annotations": []}
        output.append(
            {
                "type": "message",
                "id": "msg_fake",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        )
    first = len(output)
    for position, call in enumerate(script.tool_calls):
        identifier = call_id(call, position, "call")
        output.append(_call_item(identifier, first + position, call.name, call.arguments))
    reason = _INCOMPLETE.get(script.finish_reason or "")
    response: dict[str, Any] = {
        **_head(request),
        "status": "incomplete" if reason else "completed",
        "incomplete_details": {"reason": reason} if reason else None,
        "output": output,
        "usage": None,
    }
    if script.include_usage is not False:
        response["usage"] = {
            "input_tokens": script.prompt_tokens,
            "output_tokens": script.completion_tokens,
            "total_tokens": script.prompt_tokens + script.completion_tokens,
        }
    return response


def _head(request: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": 0,
        "model": str(request.get("model", "fake")),
        "error": None,
    }


def _call_item(call: str, index: int, name: str, arguments: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_fake_{index}",
        "call_id": call,
        "name": name,
        "arguments": arguments,
        "status": "in_progress" if not arguments else "completed",
    }
