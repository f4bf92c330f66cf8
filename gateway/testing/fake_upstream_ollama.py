"""The fake upstream's Ollama ``/api/chat`` answers: NDJSON lines and whole objects. Pure.

Stream (``application/x-ndjson``): one line per text token (``message.content``), one line per
tool call (``message.tool_calls: [{function: {name, arguments}}]``, ``arguments`` the parsed
object, plus the call's ``id`` when the script gives one), then the end marker: the ``done: true``
line with ``done_reason`` (the script's ``finish_reason``, else ``stop``; none with
``omit_finish``) and ``prompt_eval_count`` / ``eval_count`` (not with ``include_usage: false``).
The ``no_done`` fault leaves that line out; ``error_event`` sends ``{"error": <message>}``;
``malformed_sse`` sends a blank line and ``invalid_json`` a line that is not JSON (``comments``
does not apply). A request with ``"stream": false`` (or ``force_json``) gets one whole object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from gateway.testing.fake_upstream_script import Script, Step, assemble_steps, ndjson_line

__all__ = ["ollama_response", "ollama_stream"]

_CREATED = "2025-01-01T00:00:00Z"


def ollama_stream(script: Script, request: Mapping[str, Any]) -> Iterator[Step]:
    """The steps of an ``/api/chat`` NDJSON stream for ``script``."""
    model = str(request.get("model", "fake"))
    content = [_line(model, {"content": piece}) for piece in script.pieces()]
    content.extend(_line(model, {"content": "", "tool_calls": [call]}) for call in _calls(script))
    return assemble_steps(
        script,
        opening=[],
        content=[ndjson_line(line, script) for line in content],
        closing=[],
        end=[ndjson_line(_done(script, model, ""), script)],
        error=ndjson_line({"error": script.error_message}, script),
        ndjson=True,
    )


def ollama_response(script: Script, request: Mapping[str, Any]) -> dict[str, Any]:
    """A whole (non-streamed) ``/api/chat`` answer for ``script``."""
    whole = _done(script, str(request.get("model", "fake")), "".join(script.pieces()))
    calls = _calls(script)
    if calls:
        whole["message"]["tool_calls"] = calls
    return whole


def _calls(script: Script) -> list[dict[str, Any]]:
    calls = []
    for call in script.tool_calls:
        entry: dict[str, Any] = {
            "function": {"name": call.name, "arguments": json.loads(call.arguments)}
        }
        if call.id:
            entry["id"] = call.id
        calls.append(entry)
    return calls


def _line(model: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": _CREATED,
        "message": {"role": "assistant", **message},
        "done": False,
    }


def _done(script: Script, model: str, text: str) -> dict[str, Any]:
    done = _line(model, {"content": text})
    done["done"] = True
    if not script.omit_finish:
        done["done_reason"] = script.finish_reason or "stop"
    done["total_duration"] = 1_000_000
    if script.include_usage is not False:
        done["prompt_eval_count"] = script.prompt_tokens
        done["eval_count"] = script.completion_tokens
    return done
