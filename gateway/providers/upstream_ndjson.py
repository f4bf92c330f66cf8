"""Incremental framing of a newline-delimited JSON body (``application/x-ndjson``). Pure.

``NDJSONDecoder.feed`` takes the body in whatever pieces the network delivers and returns the
lines completed so far, in order, each one JSON text:

- a line ends at ``\\n``; a ``\\r`` before it is dropped, so ``\\r\\n`` works too, also split across
  two pieces;
- UTF-8 is decoded incrementally (a character split across pieces is fine; invalid UTF-8 is an
  ``NDJSONDecodeError``), and a byte-order mark at the very start is skipped;
- blank lines are skipped, and so is whitespace around a line; a line longer than the size cap is
  an ``NDJSONDecodeError``;
- at the end (``close``) a last line without its newline is still returned (a whole JSON answer
  written on one line decodes the same way).

Parsing each line is left to the caller, as parsing an SSE event's data is: a line that is not
JSON then fails where it is parsed, after the lines before it were handled.
"""

from __future__ import annotations

import codecs

__all__ = ["NDJSONDecodeError", "NDJSONDecoder"]

DEFAULT_MAX_LINE_CHARS = 16 * 1024 * 1024


class NDJSONDecodeError(ValueError):
    """The body cannot be cut into lines (invalid UTF-8, or a line beyond the size cap)."""


class NDJSONDecoder:
    """Turns body pieces into lines. One decoder per response body."""

    def __init__(self, *, max_line_chars: int = DEFAULT_MAX_LINE_CHARS) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self._max = max_line_chars
        # The current line, kept as parts: one long line in many small pieces stays linear.
        self._partial: list[str] = []
        self._partial_len = 0
        self._at_start = True

    def feed(self, data: bytes) -> list[str]:
        """Consume the next piece of the body; return the lines it completed, in order."""
        try:
            text = self._utf8.decode(data)
        except UnicodeDecodeError as exc:
            raise NDJSONDecodeError(f"NDJSON body is not valid UTF-8: {exc}") from None
        return self._feed_text(text)

    def close(self) -> list[str]:
        """The body ended: a last line left without its newline, if any."""
        try:
            text = self._utf8.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise NDJSONDecodeError(f"NDJSON body ends inside a UTF-8 character: {exc}") from None
        lines = self._feed_text(text)
        if self._partial:
            line = "".join(self._partial)
            self._partial, self._partial_len = [], 0
            lines.extend(self._line(line))
        return lines

    def _feed_text(self, text: str) -> list[str]:
        if self._at_start and text:
            self._at_start = False
            text = text.removeprefix("\ufeff")
        lines: list[str] = []
        start = 0
        while (end := text.find("\n", start)) != -1:
            piece = text[start:end]
            if self._partial:
                piece = "".join(self._partial) + piece
                self._partial, self._partial_len = [], 0
            lines.extend(self._line(piece))
            start = end + 1
        rest = text[start:]
        if rest:
            self._partial.append(rest)
            self._partial_len += len(rest)
            if self._partial_len > self._max:
                raise NDJSONDecodeError(f"NDJSON line exceeds {self._max} characters")
        return lines

    def _line(self, line: str) -> list[str]:
        line = line.strip()  # "\r" of a CRLF, and blank lines
        if not line:
            return []
        if len(line) > self._max:
            raise NDJSONDecodeError(f"NDJSON line exceeds {self._max} characters")
        return [line]
