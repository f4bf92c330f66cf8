"""A fake model upstream: a real HTTP/1.1 server (h11 over trio sockets) for tests and benchmarks.

Routes (``base_url`` = ``http://127.0.0.1:<port>/v1``, ``root_url`` the same without ``/v1``):

- ``POST /v1/chat/completions``: OpenAI; an SSE chunk stream when the body has ``"stream": true``,
  else a JSON ``chat.completion``;
- ``POST /v1/messages``: Anthropic; an event stream when ``"stream": true``, else a JSON message;
- ``POST /v1/responses``: OpenAI Responses; an event stream when ``"stream": true``, else the
  response object;
- ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (and ``:generateContent``):
  Gemini;
- ``POST /api/chat``: Ollama; NDJSON unless ``"stream": false``;
- ``POST /v1/embeddings``: deterministic embeddings;
- ``GET /v1/models``: a one-model list. Anything else: 404.

``fake_upstream_routes`` has the table, each API's module the shape of its answers and how it
reads the script's knobs.

What a request gets is a ``Script`` (see ``fake_upstream_script`` for every knob). The script of a
request is the next one queued with ``up.enqueue(...)``, else ``up.script`` (assignable at any
time); then a per-request override is merged over it: the ``x-fake`` header (a JSON object of
``Script`` fields), else a ``"fake"`` object in the JSON body. A bad override is answered 400.

Observation. Every request gets a ``RequestRecord`` in ``up.requests`` (parsed JSON ``body``,
lower-cased ``headers``, ``connection`` number) with a log of ``LogEntry(at, request, name,
detail)``, ``at`` from ``time.monotonic()`` (independent of a test's trio clock), also appended to
``up.log``: ``received``, ``headers_sent``, ``first_byte``, ``chunk`` (only with
``up.log_chunks``), ``fault``, ``response_end`` or ``aborted``, and ``closed`` (cause
``client_eof``, ``client_reset``, ``server_close`` or ``server_reset``). The server reads the socket
while it answers, sleeps or hangs, so a client that goes away is seen at once and ends the answer.

Tests wait on events, never sleep::

    async with open_fake_upstream(tokens=3) as up:  # or: nursery.start(serve_fake_upstream)
        ...  # point a provider at up.base_url
        record = await up.wait_request(0)  # request 0 fully received
        await record.wait_for("headers_sent")  # any log event, by name
        await record.closed.wait()  # its connection closed: record.closed_at, .close_cause
        await up.wait_closed(0)  # the same, by index

``up.connections_open`` / ``connections_total`` count connections; ``record.connection`` tells
whether two requests shared one. The connection driver lives in ``fake_upstream_http``.

From a shell (benchmarks): ``python -m gateway.testing.fake_upstream --port 0 --tokens 50
--delay-ms 5`` prints the base URL and serves until interrupted, keeping no records.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import h11
import trio

from gateway.testing.fake_upstream_http import Connection
from gateway.testing.fake_upstream_script import Script

__all__ = [
    "FakeUpstream",
    "LogEntry",
    "RequestRecord",
    "main",
    "open_fake_upstream",
    "serve_fake_upstream",
]


@dataclass(frozen=True, slots=True)
class LogEntry:
    at: float  # time.monotonic()
    request: int  # -1 for connection events before any request
    name: str
    detail: str = ""


@dataclass(eq=False)
class RequestRecord:
    """One request as the fake saw it, and what happened to it."""

    index: int
    connection: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    script: Script
    events: list[LogEntry] = field(default_factory=list)
    closed: trio.Event = field(default_factory=trio.Event)  # its connection closed
    finished: trio.Event = field(default_factory=trio.Event)  # the answer ended (or was cut)
    closed_at: float | None = None
    close_cause: str | None = None
    _changed: trio.Event = field(default_factory=trio.Event, repr=False)

    def time_of(self, name: str) -> float | None:
        """When the first event called ``name`` happened (``time.monotonic()``), if it did."""
        return next((entry.at for entry in self.events if entry.name == name), None)

    async def wait_for(self, name: str) -> float:
        """Wait until an event called ``name`` is logged for this request; return its time."""
        while (at := self.time_of(name)) is None:
            await self._changed.wait()
        return at

    def add(self, entry: LogEntry) -> None:
        self.events.append(entry)
        self._changed.set()
        self._changed = trio.Event()


class FakeUpstream:
    """A running fake upstream (made by ``serve_fake_upstream``)."""

    def __init__(self, host: str, port: int, script: Script, *, keep_records: bool = True):
        self.root_url = f"http://{host}:{port}"
        self.base_url = f"{self.root_url}/v1"
        self.port = port
        self.script = script
        self.log_chunks = False
        self.requests: list[RequestRecord] = []
        self.log: list[LogEntry] = []
        self.connections_open = 0
        self.connections_total = 0
        self.keep_records = keep_records
        self._queue: deque[Script] = deque()
        self._arrival = trio.Event()

    def enqueue(self, *scripts: Script) -> None:
        """Use these scripts, in order, for the next requests (then ``script`` again)."""
        self._queue.extend(scripts)

    async def wait_request(self, index: int) -> RequestRecord:
        """Wait until request ``index`` (0-based, in arrival order) has been fully received."""
        while len(self.requests) <= index:
            await self._arrival.wait()
        return self.requests[index]

    async def wait_closed(self, index: int) -> RequestRecord:
        """Wait until the connection that carried request ``index`` has closed."""
        record = await self.wait_request(index)
        await record.closed.wait()
        return record

    def record_request(
        self, connection: int, request: h11.Request, raw_body: bytes
    ) -> RequestRecord:
        """Register a fully received request (called by the connection driver)."""
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body
        script = self._queue.popleft() if self._queue else self.script
        record = RequestRecord(
            len(self.requests) if self.keep_records else -1,
            connection,
            request.method.decode(),
            request.target.decode(),
            headers,
            body,
            script,
        )
        if self.keep_records:
            self.requests.append(record)
        self.note(record, "received", f"{record.method} {record.path}")
        self._arrival.set()
        self._arrival = trio.Event()
        return record

    def note(self, record: RequestRecord | None, name: str, detail: str = "") -> None:
        """Log an event, now, for ``record`` (``None``: a connection without request)."""
        entry = LogEntry(time.monotonic(), record.index if record else -1, name, detail)
        if record is not None:
            record.add(entry)
        if self.keep_records:
            self.log.append(entry)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        self.connections_total += 1
        self.connections_open += 1
        try:
            await Connection(self, stream, self.connections_total).run()
        finally:
            self.connections_open -= 1


async def serve_fake_upstream(
    script: Script | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    keep_records: bool = True,
    task_status: trio.TaskStatus[FakeUpstream] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve a fake upstream until cancelled; ``task_status.started`` reports the ``FakeUpstream``.

    On cancellation every connection is closed.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound_port = listeners[0].socket.getsockname()[1]
    upstream = FakeUpstream(host, bound_port, script or Script(), keep_records=keep_records)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, upstream._serve_connection, listeners)
        task_status.started(upstream)


@asynccontextmanager
async def open_fake_upstream(
    script: Script | None = None, **knobs: Any
) -> AsyncIterator[FakeUpstream]:
    """Run a fake upstream on 127.0.0.1 (port 0) for the block; ``knobs`` are ``Script`` fields
    replacing those of ``script``. Leaving the block closes every connection."""
    script = replace(script or Script(), **knobs)
    async with trio.open_nursery() as nursery:
        upstream: FakeUpstream = await nursery.start(partial(serve_fake_upstream, script))
        try:
            yield upstream
        finally:
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve until interrupted, printing the base URL first."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--text", default=None, help="exact text to send (overrides --tokens)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay between tokens")
    parser.add_argument("--first-token-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    script = Script(
        text=args.text,
        tokens=args.tokens,
        token_delay=args.delay_ms / 1000,
        first_token_delay=args.first_token_delay_ms / 1000,
    )

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            serve = partial(serve_fake_upstream, script, host=args.host, port=args.port)
            upstream: FakeUpstream = await nursery.start(partial(serve, keep_records=False))
            print(upstream.base_url, flush=True)

    with suppress(KeyboardInterrupt):
        trio.run(run)


if __name__ == "__main__":
    main()
