"""Translating a Responses API event stream into provider events. Pure: no I/O.

Events read (``type`` in the data, else the SSE ``event:`` name)::

    response.output_text.delta             → TextDelta(delta)
    response.refusal.delta                 → TextDelta(delta)
    response.output_item.added             a function_call item → ToolCallDelta(index, "",
                                           id=call_id, name); index from 0 in order of appearance
    response.function_call_arguments.delta → ToolCallDelta(index, delta)
    response.function_call_arguments.done  the whole arguments, if no delta carried any
    response.output_item.done              the same for a call (and a call first seen here)
    response.completed                     Usage + Finish (tool_calls if a call came, else stop)
    response.incomplete                    Usage + Finish(length | content_filter)
    response.failed, error                 ProviderError (see ``responses_wire.response_error``)

Everything else is dropped: ``response.created`` / ``in_progress``, content-part bookkeeping,
annotations, and every ``reasoning`` item and reasoning-summary / reasoning-text event (the event
model has no place for them). ``[DONE]``, which some proxies append, ends the stream like
``response.completed`` without usage. If a stream carried no text and no call before its terminal
event, the output of the final response object is emitted instead (a proxy that only relays the
final object still works).

End-of-stream policy, as for the other providers: a body that ends without a terminal event after
some events finishes normally (``tool_calls`` if a call came, else ``stop``); a body without any
event is a ``protocol`` error, and so is data that is not a JSON object.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.providers.base import protocol_error
from gateway.providers.chat_parts import new_call_id
from gateway.providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.responses_wire import (
    finish_reason,
    output_events,
    response_error,
    usage_of,
)
from gateway.providers.upstream_sse import SSEEvent

__all__ = ["ResponsesStream"]

_TERMINAL = ("response.completed", "response.incomplete")


class ResponsesStream:
    """Translates one Responses event stream into provider events."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.done = False  # saw a terminal event
        self._seen_event = False
        self._emitted = False  # some text or call went out
        self._calls: dict[object, int] = {}  # item id and output index -> tool call index
        self._call_count = 0
        self._args_sent: set[int] = set()
        self._usage: Usage | None = None
        self._finish: str | None = None

    def feed(self, event: SSEEvent) -> list[ProviderEvent]:
        """Events for one SSE event. Raises ``ProviderError``."""
        data = event.data.strip()
        if self.done or not data:
            return []
        if data == "[DONE]":
            self.done = True
            return []
        try:
            doc = json.loads(data)
        except ValueError:
            raise protocol_error(self.provider, f"sent an invalid event: {data[:100]!r}") from None
        if not isinstance(doc, dict):
            raise protocol_error(self.provider, "sent an event that is not an object")
        kind = doc.get("type") or event.event
        if kind == "error":
            nested = doc.get("error")
            raise response_error(self.provider, nested if isinstance(nested, dict) else doc)
        if kind == "response.failed":
            response = doc.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            raise response_error(self.provider, error)
        self._seen_event = True
        events = self._event(str(kind), doc)
        if events:
            self._emitted = True
        return events

    def finish(self) -> list[ProviderEvent]:
        """``Usage`` (when reported) then one ``Finish``, once the body ended."""
        if not self._seen_event:
            raise protocol_error(self.provider, "ended its stream without any event")
        events: list[ProviderEvent] = [] if self._usage is None else [self._usage]
        reason = self._finish or ("tool_calls" if self._call_count else "stop")
        events.append(Finish(reason))
        return events

    def _event(self, kind: str, doc: dict[str, Any]) -> list[ProviderEvent]:
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            delta = doc.get("delta")
            return [TextDelta(delta)] if isinstance(delta, str) and delta else []
        if kind in ("response.output_item.added", "response.output_item.done"):
            item = doc.get("item")
            if not isinstance(item, dict) or item.get("type") != "function_call":
                return []  # messages, reasoning and server tools
            events = self._call_start(item, doc.get("output_index"))
            index = self._call_index(item.get("id"), doc.get("output_index"))
            if kind.endswith(".done") or item.get("arguments"):
                events.extend(self._whole_arguments(index, item.get("arguments")))
            return events
        if kind == "response.function_call_arguments.delta":
            index = self._call_index(doc.get("item_id"), doc.get("output_index"))
            delta = doc.get("delta")
            if index is None or not isinstance(delta, str) or not delta:
                return []
            self._args_sent.add(index)
            return [ToolCallDelta(index, delta)]
        if kind == "response.function_call_arguments.done":
            index = self._call_index(doc.get("item_id"), doc.get("output_index"))
            return self._whole_arguments(index, doc.get("arguments"))
        if kind in _TERMINAL:
            return self._terminal(doc.get("response"))
        return []

    def _call_start(self, item: dict[str, Any], output_index: object) -> list[ProviderEvent]:
        if self._call_index(item.get("id"), output_index) is not None:
            return []
        index = self._call_count
        self._call_count += 1
        for key in (item.get("id"), output_index):
            if key is not None:
                self._calls[key] = index
        call_id = item.get("call_id")
        name = item.get("name")
        return [
            ToolCallDelta(
                index,
                "",
                id=call_id if isinstance(call_id, str) and call_id else new_call_id(),
                name=name if isinstance(name, str) else "",
            )
        ]

    def _call_index(self, item_id: object, output_index: object) -> int | None:
        for key in (item_id, output_index):
            if key is not None and key in self._calls:
                return self._calls[key]
        return None

    def _whole_arguments(self, index: int | None, arguments: object) -> list[ProviderEvent]:
        if index is None or index in self._args_sent:
            return []
        self._args_sent.add(index)
        text = arguments if isinstance(arguments, str) and arguments else "{}"
        return [ToolCallDelta(index, text)]

    def _terminal(self, response: object) -> list[ProviderEvent]:
        self.done = True
        if not isinstance(response, dict):
            return []
        events = [] if self._emitted else output_events(response)
        has_calls = self._call_count > 0 or any(isinstance(e, ToolCallDelta) for e in events)
        self._usage = usage_of(response)
        self._finish = finish_reason(response, has_calls)
        return events
