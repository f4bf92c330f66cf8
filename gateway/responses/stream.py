"""The response object and its Server-Sent Events, from a run's events. Pure: events in, bytes
and documents out, no I/O.

One ``ResponseStream`` per response. ``start`` gives ``response.created`` and
``response.in_progress``; ``feed`` turns each run event into its events, in OpenAI's order::

    response.output_item.added        (message)         (function_call)
    response.content_part.added       response.function_call_arguments.delta…
    response.output_text.delta…       response.function_call_arguments.done
    response.output_text.done         response.output_item.done
    response.content_part.done
    response.output_item.done

and the end of the run gives ``response.completed`` (``response.incomplete`` when the model hit
its output limit or a content filter, ``response.failed`` when the run failed or was aborted:
``status`` ``failed`` or ``cancelled``) with the whole response, then ``data: [DONE]``. Every event
is ``event: <type>`` + ``data: <json>`` with a ``sequence_number`` counting from 0. An output text
delta renders only its number and its text into a prefix made once per item.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gateway.agents.events import (
    AbortReason,
    Finish,
    RunEvent,
    RunFailed,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from gateway.agents.reply import Reply
from gateway.errors import GatewayError
from gateway.providers.base import ProviderError
from gateway.responses.items import function_call_item, message_item, new_id, output_text
from gateway.types import JSONObject

DONE = b"data: [DONE]\n\n"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_DELTA_END = b',"logprobs":[]}\n\n'


def usage_json(usage: Usage | None) -> JSONObject:
    usage = usage or Usage(0, 0)
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def failure(error: GatewayError, reason: AbortReason | None) -> JSONObject:
    """A failed (or aborted) run's ``error`` object: ``{code, message}``."""
    if reason in (AbortReason.KILLED, AbortReason.SHUTDOWN):
        return {"code": reason.value if reason else "aborted", "message": error.message}
    code = "server_error"
    if isinstance(error, ProviderError):
        text = f"{error.message} {error.upstream_status or ''}".lower()
        if error.kind == "rate_limited":
            code = "rate_limit_exceeded"
        elif "context_length" in text or "context window" in text or "too many tokens" in text:
            code = "context_length_exceeded"
        elif error.kind == "bad_request":
            code = "invalid_prompt"
    elif reason is AbortReason.TIMEOUT:
        code = "timeout"
    return {"code": code, "message": error.message}


class ResponseStream:
    """The events and the response object of one response (see the module docstring).
    ``describe(status, output, usage)`` renders the response object around its output: the
    route gives it (the settings of the request are its to echo)."""

    def __init__(self, describe: Callable[..., JSONObject], *, silent: bool = False) -> None:
        """``silent``: only the response object is wanted (a JSON answer), no event bytes."""
        self._describe = describe
        self._silent = silent
        self.reply = Reply()
        self.output: list[JSONObject] = []  # items done, in order
        self.status = "in_progress"
        self.error: JSONObject | None = None
        self.incomplete: str | None = None
        self._seq = 0
        self._message_id: str | None = None
        self._delta_prefix = b""
        self._delta_middle = b""
        self._call: int | None = None  # the index of the open function call
        self._call_ids: dict[int, str] = {}
        self._finished = False
        self._finish: Finish | None = None  # the model finished; the run has not ended yet

    @property
    def finished(self) -> bool:
        return self._finished

    def response(self) -> JSONObject:
        """The response object as it stands (``output``: the items done so far)."""
        return self._describe(
            status=self.status,
            output=self.output,
            usage=usage_json(self.reply.usage) if self._finished else None,
            error=self.error,
            incomplete=self.incomplete,
        )

    def start(self) -> bytes:
        snapshot = self.response()
        return self._event("response.created", {"response": snapshot}) + self._event(
            "response.in_progress", {"response": snapshot}
        )

    def feed(self, event: RunEvent) -> bytes:
        if self._finished:
            return b""
        kind = type(event)
        if kind is TextDelta:
            return self._text(event)  # type: ignore[arg-type]
        if kind is ToolCallDelta:
            return self._tool_call(event)  # type: ignore[arg-type]
        self.reply.add(event)
        if kind is Finish:
            # Said once the run has ended (``tail``): its turn is recorded by then, and a run
            # that fails to record it still fails.
            self._finish = event  # type: ignore[assignment]
            return b""
        if kind is RunFailed:
            failed: RunFailed = event  # type: ignore[assignment]
            self.error = failure(failed.error, failed.reason)
            aborted = failed.reason in (AbortReason.KILLED, AbortReason.SHUTDOWN)
            return self._end("cancelled" if aborted else "failed", "incomplete", "response.failed")
        return b""  # usage: reported with the end

    # As a ``StreamEncoder`` (``gateway.http.streaming``)

    def head(self) -> bytes:
        return self.start()

    def encode(self, event: RunEvent) -> bytes:
        return self.feed(event)

    def tail(self) -> bytes:
        """The run's channel ended: the response completes (or is incomplete) if the model
        finished; nothing more if it already failed; else it failed (a run always ends with
        ``Finish`` or ``RunFailed``; this is for a run that broke)."""
        if self._finished:
            return b""
        if self._finish is not None:
            reason = self._finish.reason
            if reason in _INCOMPLETE:
                self.incomplete = _INCOMPLETE[reason]
                return self._end("incomplete", "incomplete", "response.incomplete")
            return self._end("completed", "completed", "response.completed")
        return self.feed(RunFailed(GatewayError("The run ended without a reply.")))

    # Output text

    def _text(self, event: TextDelta) -> bytes:
        if self._call is not None or self._message_id is None:
            return self._text_opening(event)
        self.reply.add(event)
        seq = self._seq
        self._seq += 1
        if self._silent:
            return b""
        # The hot path: one event per token, its fixed parts rendered once per item.
        return b"".join(
            (self._delta_prefix, str(seq).encode(), self._delta_middle, _dumps(event.text).encode(),
             _DELTA_END)
        )  # fmt: skip

    def _text_opening(self, event: TextDelta) -> bytes:
        """Text after a call, or the first text: close the call, open the message item."""
        out = b""
        if self._call is not None:
            out += self._close_call("completed")
        if self._message_id is None:
            out += self._open_message()
        return out + self._text(event)

    def _open_message(self) -> bytes:
        self._message_id = new_id("msg")
        index = len(self.output)
        item = message_item(self._message_id, None, "in_progress")
        self._delta_prefix = (
            b"event: response.output_text.delta\n"
            b'data: {"type":"response.output_text.delta","sequence_number":'
        )
        self._delta_middle = (
            f',"item_id":"{self._message_id}","output_index":{index},"content_index":0,"delta":'
        ).encode()
        return self._event(
            "response.output_item.added", {"output_index": index, "item": item}
        ) + self._event(
            "response.content_part.added",
            {
                "item_id": self._message_id,
                "output_index": index,
                "content_index": 0,
                "part": output_text(""),
            },
        )

    def _close_message(self, status: str) -> bytes:
        assert self._message_id is not None
        item_id, index, text = self._message_id, len(self.output), self.reply.text
        self._message_id = None
        part = output_text(text)
        item = message_item(item_id, text, status)
        self.output.append(item)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return (
            self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
            + self._event("response.content_part.done", {**where, "part": part})
            + self._event("response.output_item.done", {"output_index": index, "item": item})
        )

    # Function calls

    def _tool_call(self, event: ToolCallDelta) -> bytes:
        out = b""
        if event.index != self._call:
            if self._message_id is not None:
                out += self._close_message("completed")
            if self._call is not None:
                out += self._close_call("completed")
            self._call = event.index
            self.reply.add(event)
            item_id = self._call_ids[event.index] = new_id("fc")
            call = self.reply.calls[event.index]
            item = function_call_item(item_id, call.id, call.name, "", "in_progress")
            out += self._event(
                "response.output_item.added", {"output_index": len(self.output), "item": item}
            )
        else:
            self.reply.add(event)
        if event.arguments:
            out += self._event(
                "response.function_call_arguments.delta",
                {
                    "item_id": self._call_ids[event.index],
                    "output_index": len(self.output),
                    "delta": event.arguments,
                },
            )
        return out

    def _close_call(self, status: str) -> bytes:
        assert self._call is not None
        index = self._call
        self._call = None
        call = self.reply.calls[index]
        item_id, arguments = self._call_ids[index], "".join(call.arguments)
        item = function_call_item(item_id, call.id, call.name, arguments, status)
        position = len(self.output)
        self.output.append(item)
        done = {"item_id": item_id, "output_index": position, "name": call.name}
        return self._event(
            "response.function_call_arguments.done", {**done, "arguments": arguments}
        ) + self._event("response.output_item.done", {"output_index": position, "item": item})

    # The end

    def _end(self, status: str, open_status: str, event_type: str) -> bytes:
        out = b""
        if self._message_id is not None:
            out += self._close_message(open_status)
        if self._call is not None:
            out += self._close_call(open_status)
        self.status = status
        self._finished = True
        end = self._event(event_type, {"response": self.response()})
        return b"" if self._silent else out + end + DONE

    def _event(self, kind: str, fields: dict[str, Any]) -> bytes:
        seq = self._seq
        self._seq += 1
        if self._silent:
            return b""
        data = _dumps({"type": kind, "sequence_number": seq, **fields})
        return b"event: " + kind.encode() + b"\ndata: " + data.encode() + b"\n\n"
