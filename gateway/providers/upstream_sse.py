"""Incremental parsing of an upstream's ``text/event-stream`` body. Pure: no I/O, no trio.

``SSEDecoder.feed`` takes the body in whatever pieces the network delivers and returns the events
completed so far. It follows the WHATWG event-stream rules that matter for model APIs:

- lines end in ``\\r\\n``, ``\\n`` or ``\\r``, and a terminator may be split across two pieces (a
  ``\\r`` at the end of one piece and ``\\n`` at the start of the next are one line end);
- UTF-8 is decoded incrementally, so a character split across pieces is fine (invalid UTF-8 is an
  ``SSEDecodeError``);
- a line starting with ``:`` is a comment (keep-alive) and is ignored;
- ``field: value`` lines (one space after the colon is dropped): ``data`` lines accumulate, joined
  with ``\\n``; ``event`` sets the event type; ``id``, ``retry`` and unknown fields are ignored, and
  so is a line without a colon that names no known field (that is how a malformed line is treated);
- a blank line dispatches the event; an event without any ``data`` line is dropped.

One deliberate difference: at end of stream (``close``) an event still pending without its final
blank line is delivered rather than discarded, so an upstream that forgets the last blank line
still works. A truncated last event then fails where its JSON is parsed, which is where it belongs.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

__all__ = ["SSEDecodeError", "SSEDecoder", "SSEEvent"]

_LINE_END = re.compile(r"\r\n|\r|\n")

DEFAULT_MAX_EVENT_CHARS = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its type (``message`` unless an ``event:`` line said otherwise)
    and its data lines joined with ``\\n``."""

    data: str
    event: str = "message"


class SSEDecodeError(ValueError):
    """The body is not a usable event stream (invalid UTF-8, or an event beyond the size cap)."""


class SSEDecoder:
    """Turns body pieces into ``SSEEvent``s. One decoder per response body.

    Most pieces take a short path: valid UTF-8 on their own, ``\\n`` line ends only, ``data:``
    lines and blank lines. Anything else (a character split across pieces, a ``\\r``, another
    field) goes through the general rules, with the same results.
    """

    def __init__(self, *, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self._utf8_idle = True  # the incremental decoder holds no part of a character
        self._max = max_event_chars
        # The current, not yet terminated line, kept as parts to avoid quadratic concatenation
        # when one long line arrives in many small pieces.
        self._partial: list[str] = []
        self._partial_len = 0
        self._skip_lf = False  # the previous piece ended in "\r": a leading "\n" is its pair
        self._at_start = True  # a byte-order mark is only allowed at the very start
        self._data: list[str] = []
        self._data_len = 0
        self._event = ""

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Consume the next piece of the body; return the events it completed, in order."""
        if self._utf8_idle:
            try:
                text = data.decode()
            except UnicodeDecodeError:  # split or invalid: the incremental decoder tells which
                text = self._decode(data)
        else:
            text = self._decode(data)
        if self._at_start and text:
            self._at_start = False
            text = text.removeprefix("\ufeff")
        if self._skip_lf or "\r" in text:
            return self._feed_text(text)
        return self._feed_lf_text(text)

    def close(self) -> list[SSEEvent]:
        """The body ended: return the events still pending (see the module docstring)."""
        self._decode(b"", final=True)  # only checks: the strict decoder returns no more text
        pending = [self._line("".join(self._partial))] if self._partial else []
        self._partial, self._partial_len = [], 0
        pending.append(self._dispatch())
        return [event for event in pending if event is not None]

    def _decode(self, data: bytes, *, final: bool = False) -> str:
        try:
            text = self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            where = "ends inside a UTF-8 character" if final else "is not valid UTF-8"
            raise SSEDecodeError(f"event stream {where}: {exc}") from None
        self._utf8_idle = not self._utf8.getstate()[0]
        return text

    def _feed_lf_text(self, text: str) -> list[SSEEvent]:
        """``_feed_text`` for text with ``\\n`` line ends only."""
        if "\n" not in text:
            if text:
                self._keep_partial(text)
            return []
        lines = text.split("\n")
        if self._partial:
            lines[0] = "".join(self._partial) + lines[0]
            self._partial, self._partial_len = [], 0
        rest = lines.pop()
        # What _line and _dispatch do, inlined for the two kinds of line that make up streams.
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if line.startswith("data:"):
                value = line[6:] if line.startswith(" ", 5) else line[5:]
                data.append(value)
                self._data_len += len(value) + 1
                self._check_size(self._data_len)
            elif line:
                self._line(line)  # never a blank line: it neither dispatches nor replaces _data
            elif data:
                events.append(SSEEvent("\n".join(data), self._event or "message"))
                data = self._data = []
                self._data_len, self._event = 0, ""
            else:
                self._event = ""
        if rest:
            self._keep_partial(rest)
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if self._skip_lf and text:
            self._skip_lf = False
            text = text.removeprefix("\n")
        events: list[SSEEvent] = []
        pos = 0
        for match in _LINE_END.finditer(text):
            piece = text[pos : match.start()]
            if self._partial:
                piece = "".join(self._partial) + piece
                self._partial, self._partial_len = [], 0
            if (event := self._line(piece)) is not None:
                events.append(event)
            pos = match.end()
        rest = text[pos:]
        if text.endswith("\r"):
            self._skip_lf = True
        if rest:
            self._keep_partial(rest)
        return events

    def _keep_partial(self, text: str) -> None:
        self._partial.append(text)
        self._partial_len += len(text)
        self._check_size(self._partial_len)

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._add_data(value)
        elif name == "event":
            self._event = value
        return None

    def _add_data(self, value: str) -> None:
        self._data.append(value)
        self._data_len += len(value) + 1
        self._check_size(self._data_len)

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent("\n".join(self._data), self._event or "message")
        self._data, self._data_len, self._event = [], 0, ""
        return event

    def _check_size(self, size: int) -> None:
        if size > self._max:
            raise SSEDecodeError(f"event stream event exceeds {self._max} characters")
