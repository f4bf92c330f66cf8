"""Server-Sent Events encoding of chat completion chunks. Pure: bytes in, bytes out, no I/O.

Every chunk of one completion shares ``id``, ``created`` and ``model``; the constant part of the
JSON is rendered once per stream so each delta costs one small ``json.dumps``.
"""

from __future__ import annotations

import json

from gateway.agents.events import Finish, RunEvent, RunFailed, TextDelta, ToolCallDelta, Usage
from gateway.errors import GatewayError
from gateway.types import JSONObject

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"
_CONTENT = b'{"content":'
_OPEN_END = b'},"finish_reason":null}]}\n\n'

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def tool_call_delta_dict(event: ToolCallDelta) -> JSONObject:
    """The OpenAI ``delta.tool_calls[]`` item: id/type/name on a call's first delta only."""
    function: JSONObject = {"arguments": event.arguments}
    item: JSONObject = {"index": event.index}
    if event.id is not None:
        item["id"] = event.id
        item["type"] = "function"
    if event.name is not None:
        function = {"name": event.name, "arguments": event.arguments}
    item["function"] = function
    return item


class ChunkEncoder:
    """Encodes the events of one run as ``chat.completion.chunk`` SSE events."""

    __slots__ = ("_head", "_prefix")

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        head = _dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
        )
        self._head = head[:-1]  # without the closing brace: choices/usage follow
        self._prefix = ("data: " + self._head + ',"choices":[{"index":0,"delta":').encode()

    def _delta(self, delta: JSONObject, finish_reason: str | None = None) -> bytes:
        tail = (
            ',"finish_reason":null}]}\n\n'
            if finish_reason is None
            else (',"finish_reason":' + _dumps(finish_reason) + "}]}\n\n")
        )
        return self._prefix + (_dumps(delta) + tail).encode()

    def role(self) -> bytes:
        """The first chunk of every stream."""
        return self._delta({"role": "assistant", "content": ""})

    def encode(self, event: RunEvent) -> bytes:
        """The SSE bytes for one event (``b""`` for usage, which goes in ``usage()`` at the end)."""
        if type(event) is TextDelta:
            # The hot path, one chunk per token: only the text is encoded.
            return b"".join((self._prefix, _CONTENT, _dumps(event.text).encode(), _OPEN_END))
        if type(event) is ToolCallDelta:
            return self._delta({"tool_calls": [tool_call_delta_dict(event)]})
        if type(event) is Finish:
            return self._delta({}, event.reason)
        if type(event) is RunFailed:
            return self.error(event.error)
        return b""

    def usage(self, usage: Usage) -> bytes:
        """The final ``{"choices":[],"usage":{...}}`` chunk (``stream_options.include_usage``)."""
        body = self._head + ',"choices":[],"usage":' + _dumps(usage.as_dict()) + "}"
        return b"data: " + body.encode() + b"\n\n"

    @staticmethod
    def error(error: GatewayError) -> bytes:
        """An in-stream error event (after the response has started)."""
        return b"data: " + _dumps(error.body()).encode() + b"\n\n"


class ChatStream:
    """A chat completion stream's encoding (a ``StreamEncoder``): the role chunk first, each
    event's chunk, then the usage chunk (``include_usage``, not after a failure) and ``[DONE]``.
    A ``Finish`` after a failure (the run's own closing) is not sent."""

    __slots__ = ("_encoder", "_failed", "_include_usage", "_usage", "finished")

    def __init__(self, encoder: ChunkEncoder, *, include_usage: bool) -> None:
        self._encoder = encoder
        self._include_usage = include_usage
        self._usage: Usage | None = None
        self._failed = False
        self.finished = False

    def head(self) -> bytes:
        return self._encoder.role()

    def encode(self, event: RunEvent) -> bytes:
        kind = type(event)
        if kind is Usage:
            self._usage = event  # type: ignore[assignment]
            return b""
        if kind is RunFailed:
            self._failed = True
        elif kind is Finish and self._failed:
            return b""
        return self._encoder.encode(event)

    def tail(self) -> bytes:
        self.finished = True
        if self._include_usage and not self._failed:
            return self._encoder.usage(self._usage or Usage(0, 0)) + DONE
        return DONE
