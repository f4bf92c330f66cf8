"""What the fake upstream sends: the ``Script`` knobs and the ``Step``s a stream is made of. Pure.

A ``Script`` describes one answer (see it for every knob). ``fake_upstream_render`` (and the
``fake_upstream_<api>`` modules) turn it into each API's documents; a stream becomes a sequence
of ``Step``s the server executes in order: ``Send`` bytes, ``Sleep``, or a fault (``Hang``,
``Reset``, ``Close``). ``assemble_steps`` places the script's delays and its mid-stream fault
between the frames, which are SSE events (``frame``) or NDJSON lines (``ndjson_line``). Steps are
made as they are sent (a generator), so a long stream starts at once and costs only what is sent.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = [
    "FAULTS",
    "Close",
    "FakeToolCall",
    "Fault",
    "Hang",
    "Reset",
    "Script",
    "Send",
    "Sleep",
    "Step",
    "assemble_steps",
    "call_id",
    "fragments",
    "frame",
    "line_ends",
    "ndjson_line",
]

Fault: TypeAlias = Literal[
    "hang_before_headers",  # read the request, then never answer
    "close_before_headers",  # read the request, then close the connection without answering
    "hang_mid_stream",  # after ``fault_after`` content frames, send nothing more (socket open)
    "reset_mid_stream",  # after ``fault_after`` frames, reset the TCP connection (RST)
    "close_mid_stream",  # after ``fault_after`` frames, close (FIN) inside the chunked body
    "malformed_sse",  # a line that is no SSE field (NDJSON: a blank line), then carry on
    "invalid_json",  # a data line (NDJSON: a line) that is not JSON, then carry on
    "error_event",  # an API error event mid-stream, then end the body (no [DONE])
    "no_done",  # end without the API's end marker (see each API's renderer)
]
FAULTS: tuple[str, ...] = Fault.__args__  # type: ignore[attr-defined]

_WORDS = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True, slots=True)
class FakeToolCall:
    """A tool call the fake model makes (``arguments`` is streamed in small fragments)."""

    name: str
    arguments: str = "{}"
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Script:
    """One answer of the fake upstream. Times are in seconds.

    Content: ``text`` (exact text, split into word tokens), else ``tokens`` tokens
    ``"w0 w1 ..."``; ``tool_calls``; ``finish_reason`` (default: the natural one for the API),
    ``omit_finish`` to send none; ``include_usage`` (``None``: OpenAI as the request's
    ``stream_options`` asks, Anthropic always), ``prompt_tokens``; ``force_json`` answers one JSON
    document even to a streaming request (like a proxy that drops ``stream``).
    Timing: ``headers_delay`` before the response headers, ``first_token_delay`` between headers
    and the first body byte (the opening frames go with the first token), ``token_delay``
    between content frames.
    Errors: ``status`` other than 200 answers ``error_message`` in the API's JSON error shape (with
    ``error_type``), or ``error_body`` verbatim; ``error_content_type`` containing ``html`` sends an
    nginx-style HTML page; ``retry_after`` adds that header.
    Faults: ``fault`` (see ``Fault``) after ``fault_after`` content frames. A whole JSON answer
    (not streamed) honours ``first_token_delay`` between its headers and its body, and the
    ``*_mid_stream`` faults after half of its body.
    Framing: ``crlf`` line ends, ``comments`` (a ``: keep-alive`` comment before every event),
    ``split_bytes`` (write every event in pieces of that many bytes, to split lines across reads).
    """

    text: str | None = None
    tokens: int = 5
    tool_calls: tuple[FakeToolCall, ...] = ()
    finish_reason: str | None = None
    omit_finish: bool = False
    include_usage: bool | None = None
    prompt_tokens: int = 11
    force_json: bool = False
    headers_delay: float = 0.0
    first_token_delay: float = 0.0
    token_delay: float = 0.0
    status: int = 200
    error_message: str = "fake upstream error"
    error_type: str | None = None
    error_body: str | None = None
    error_content_type: str = "application/json"
    retry_after: str | None = None
    fault: Fault | None = None
    fault_after: int = 1
    crlf: bool = False
    comments: bool = False
    split_bytes: int = 0

    def with_overrides(self, overrides: Mapping[str, Any]) -> Script:
        """This script with fields replaced from a JSON object (``tool_calls`` as objects).

        Raises ``ValueError`` for an unknown field or fault.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - names
        if unknown:
            raise ValueError(f"unknown fake knob(s): {', '.join(sorted(unknown))}")
        changes = dict(overrides)
        if "tool_calls" in changes:
            changes["tool_calls"] = tuple(FakeToolCall(**call) for call in changes["tool_calls"])
        if changes.get("fault") not in (None, *FAULTS):
            raise ValueError(f"unknown fault {changes['fault']!r}")
        return dataclasses.replace(self, **changes)

    def pieces(self) -> list[str]:
        """The text tokens, in order; joined they are exactly the text sent."""
        return list(self.iter_pieces())

    def iter_pieces(self) -> Iterator[str]:
        """``pieces()`` one at a time (``tokens`` of them are made as they are asked for)."""
        if self.text is not None:
            yield from _WORDS.findall(self.text)
            return
        for i in range(self.tokens):
            yield f" w{i}" if i else "w0"

    @property
    def completion_tokens(self) -> int:
        words = self.tokens if self.text is None else len(_WORDS.findall(self.text))
        return words + len(self.tool_calls)


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    content: bool = False  # a content frame (counted for ``fault_after`` and delays)


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Hang:
    pass


@dataclass(frozen=True, slots=True)
class Reset:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    pass


Step: TypeAlias = Send | Sleep | Hang | Reset | Close


def assemble_steps(
    script: Script,
    *,
    opening: list[bytes],
    content: Iterable[bytes],
    closing: list[bytes],
    end: list[bytes],
    error: bytes,
    ndjson: bool = False,
) -> Iterator[Step]:
    """Assemble frames with the script's delays and its mid-stream fault (``ndjson``: the
    frames are NDJSON lines, and so are the faults' malformed frames). ``content`` is read as
    the steps are."""
    # The opening frames travel with the first token, as OpenAI sends its role chunk: until
    # then the body is silent, which is what a slow model looks like on the wire.
    if script.first_token_delay > 0:
        yield Sleep(script.first_token_delay)
    yield from (Send(data) for data in opening)
    fault_at = script.fault_after if script.fault else -1
    count = 0
    for number, data in enumerate(content):
        count = number + 1
        if number == fault_at:
            ending = _ending_fault(script, error)
            if ending is not None:
                yield ending
                return
            yield from _bad_frame(script, ndjson)
        if number > 0 and script.token_delay > 0:
            yield Sleep(script.token_delay)
        yield Send(data, content=True)
    if script.fault and fault_at >= count:  # a fault beyond the last content frame: right after it
        ending = _ending_fault(script, error)
        if ending is not None:
            yield ending
            return
        yield from _bad_frame(script, ndjson)
    yield from (Send(data) for data in closing)
    if script.fault != "no_done":
        yield from (Send(data) for data in end)


def _ending_fault(script: Script, error: bytes) -> Step | None:
    """The step of a mid-stream fault that ends the stream, ``None`` for the others."""
    if script.fault == "hang_mid_stream":
        return Hang()
    if script.fault == "reset_mid_stream":
        return Reset()
    if script.fault == "close_mid_stream":
        return Close()
    if script.fault == "error_event":
        return Send(error)
    return None


def _bad_frame(script: Script, ndjson: bool) -> Iterator[Send]:
    """The bad frame ``malformed_sse`` and ``invalid_json`` insert (the stream goes on)."""
    if script.fault == "malformed_sse":
        yield Send(line_ends(b"\n" if ndjson else b"this line is not an SSE field\n\n", script))
    elif script.fault == "invalid_json":
        yield Send(line_ends(b"{not json\n" if ndjson else b"data: {not json\n\n", script))


def frame(document: object, script: Script, event: str | None = None) -> bytes:
    """One SSE event (``document`` JSON-encoded unless a string) in the script's framing."""
    data = document if isinstance(document, str) else json.dumps(document)
    text = f"event: {event}\ndata: {data}\n\n" if event else f"data: {data}\n\n"
    if script.comments:
        text = ": keep-alive\n\n" + text
    return line_ends(text.encode(), script)


def ndjson_line(document: object, script: Script) -> bytes:
    """One NDJSON line (``comments`` do not apply: NDJSON has none)."""
    return line_ends(json.dumps(document).encode() + b"\n", script)


def line_ends(data: bytes, script: Script) -> bytes:
    return data.replace(b"\n", b"\r\n") if script.crlf else data


def fragments(arguments: str, size: int = 8) -> list[str]:
    """Tool-call arguments cut in small pieces, as models stream them."""
    return [arguments[i : i + size] for i in range(0, len(arguments), size)]


def call_id(call: FakeToolCall, index: int, prefix: str) -> str:
    return call.id or f"{prefix}_fake_{index}"
