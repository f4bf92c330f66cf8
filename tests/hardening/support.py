"""Shared tools of the hardening tests: Hypothesis driven from a trio test, a raw HTTP/1.1
exchange over a socket (any bytes out, h11 parsing what comes back), the checks every response
must pass, and a watch on error logs.

Hypothesis and trio: one server per test function, many examples through it. The test starts the
server in its nursery, then runs the ``@given`` function in a worker thread
(``trio.to_thread.run_sync``); each example is executed back on the trio loop with
``trio.from_thread.run``. Hypothesis keeps its whole machinery (generation, shrinking, the
falsifying example in the report) and every example talks to the same live server.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import h11
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T = TypeVar("T")

SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
ERROR_KEYS = {"message", "type", "param", "code"}


def fuzz_examples(default: int) -> int:
    """How many examples a fuzz test runs: ``GATEWAY_FUZZ_EXAMPLES`` if set, else ``default``."""
    return int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", default))


async def run_examples(
    strategy: st.SearchStrategy[T],
    check: Callable[[T], Awaitable[None]],
    *,
    examples: int,
) -> None:
    """Run ``check`` on ``examples`` values drawn by Hypothesis, one after the other, on this
    trio loop (see the module docstring). A failing example is shrunk and re-raised here."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(strategy.map(_Shown))
    def property_holds(example: _Shown[T]) -> None:
        trio.from_thread.run(check, example.value)

    await trio.to_thread.run_sync(property_holds)


@dataclass(frozen=True)
class _Shown(Generic[T]):
    """An example whose repr stays short in Hypothesis' report (bodies reach megabytes)."""

    value: T

    def __repr__(self) -> str:
        text = repr(self.value)
        return text if len(text) <= 600 else f"{text[:600]}... ({len(text)} characters)"


# Raw HTTP


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request_bytes(
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    *,
    host: str = "127.0.0.1",
    content_length: bool = True,
) -> bytes:
    """An HTTP/1.1 request exactly as given (no validation: header bytes go out as they are)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + host.encode()]
    lines += [name + b": " + value for name, value in headers]
    if content_length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def open_stream(url: str) -> trio.SocketStream:
    parts = urlsplit(url)
    return await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)


async def read_response(
    stream: trio.SocketStream, method: str = "POST", *, pending: bytes = b""
) -> RawResponse | None:
    """Read one whole response from ``stream`` (``None`` if the server closed before one was
    complete). ``pending`` is what was already received for it."""
    parser = h11.Connection(h11.CLIENT)
    # h11 parses a response only after "sending" a request: the real one went out raw.
    parser.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    parser.send(h11.EndOfMessage())
    if pending:
        parser.receive_data(pending)
    status = 0
    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:
            return None
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            parser.receive_data(data)
        elif isinstance(event, h11.InformationalResponse):
            continue
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return RawResponse(status, headers, bytes(body))
        else:  # ConnectionClosed before the end
            return None


async def exchange(url: str, data: bytes, *, method: str = "POST") -> RawResponse | None:
    """Send ``data`` on a new connection and read one response (``None``: closed without one).

    Reads while it sends, like a real client: a server that answers early (413) and stops
    reading must not deadlock the exchange, and its answer is read even if sending then fails.
    """
    async with await open_stream(url) as stream:
        result: list[RawResponse | None] = []
        async with trio.open_nursery() as nursery:

            async def send() -> None:
                with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.send_all(data)

            nursery.start_soon(send)
            result.append(await read_response(stream, method))
            nursery.cancel_scope.cancel()
        return result[0]


# What every response must look like


def assert_no_leak(text: bytes) -> None:
    """No stack trace in what the client sees (checked on error answers: a 200 echoes what the
    client wrote)."""
    for marker in (b"Traceback", b'File "/', b"site-packages"):
        assert marker not in text, f"internal detail {marker!r} in {text[:300]!r}"


def assert_error_shape(document: Any) -> None:
    """``{"error": {"message", "type", "param", "code"}}``, exactly."""
    assert isinstance(document, dict) and set(document) == {"error"}, document
    error = document["error"]
    assert isinstance(error, dict) and set(error) == ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert error["param"] is None or isinstance(error["param"], str), error
    assert error["code"] is None or isinstance(error["code"], str), error


def sse_events(body: bytes) -> list[Any]:
    """The ``data:`` payloads of an SSE body (``"[DONE]"`` as a string), comments skipped."""
    events: list[Any] = []
    for block in body.decode("utf-8").split("\n\n"):
        if not block or block.startswith(":"):
            continue
        assert block.startswith("data: "), block[:200]
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events


def check_gateway_response(response: RawResponse, *, chat: bool = True) -> None:
    """The promises of every response the gateway itself (not Hypercorn's parser) sends."""
    assert response.status < 500, (response.status, response.body[:500])
    if response.status != 200:
        assert_no_leak(response.body)
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.headers)
    content_type = response.headers.get("content-type", "")
    if response.status == 404 and content_type.startswith("text/plain"):
        assert response.body == b"Not Found", response.body[:200]  # an unknown path
    elif response.status >= 400:  # 404 too for an unknown session or model: shaped
        assert content_type.startswith("application/json"), content_type
        assert_error_shape(response.json())
    elif chat and response.status == 200 and content_type.startswith("text/event-stream"):
        events = sse_events(response.body)
        assert events and events[-1] == "[DONE]", events[-3:]
        for event in events[:-1]:
            if "error" in event:
                assert_error_shape(event)
                assert_no_leak(json.dumps(event).encode())
            else:
                assert event["object"] == "chat.completion.chunk", event
    elif chat and response.status == 200:
        document = response.json()
        assert document["object"] == "chat.completion", document
        assert document["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")


# Error logs


class ErrorLog(logging.Handler):
    """Collects every log record at ERROR or above while installed (``watch_errors``)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def assert_none(self) -> None:
        assert not self.records, [
            f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else r.getMessage()
            for r in self.records
        ]


@contextmanager
def watch_errors() -> Iterator[ErrorLog]:
    """Collect ERROR records of every logger for the block."""
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def rss_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
