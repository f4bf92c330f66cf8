"""Minimal HTTP/1.1 clients for the benchmarks: raw trio sockets, h11 for keep-alive exchanges.

Raw sockets give control over the exact moment a connection closes (``cancel``); the h11 client
keeps a connection alive across requests and timestamps the first content token and the end of
each answer (``overhead``, ``scale``), of a chat completion or of a Responses API stream. Both
cost the same whichever server they talk to, so differences between a direct and a gatewayed
request are the servers'.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11
import trio

# The first content token of either stream: a non-empty ``content`` of a chat completion chunk,
# with or without a space after the colon (the fake upstream writes ``"content": "w0"``, the
# gateway ``"content":"w0"``), or a non-empty ``delta`` of a Responses stream. Only text deltas
# carry a string ``delta`` in the streams measured here (a chat chunk's ``delta`` is an object;
# no tools, no reasoning). One pattern for both: it is searched only until the first match, in
# the first one or two reads of an answer, and costs under a microsecond more than ``content``
# alone.
CONTENT = re.compile(rb'"(?:content": ?|delta":)"[^"]')


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    prefix: str  # path prefix, without a trailing slash

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"expected an http:// URL, got {url!r}")
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"benchmarks only talk to loopback addresses, got {parts.hostname}")
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"))

    def path(self, tail: str) -> str:
        return self.prefix + tail


def tagged_text(bench_id: str, knobs: dict[str, Any] | None = None) -> str:
    """A user message carrying a request id and fake-upstream knobs (see ``bench._upstream``)."""
    text = f"bench:{bench_id}"
    if knobs:
        text += " fake:" + json.dumps(knobs, separators=(",", ":"))
    return text


def chat_body(model: str, text: str, *, stream: bool, **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def responses_body(model: str, text: str, *, stream: bool, **extra: Any) -> bytes:
    """A Responses API request (``POST /v1/responses``) whose ``input`` is ``text``."""
    body: dict[str, Any] = {"model": model, "stream": stream, "input": text}
    body.update(extra)
    return json.dumps(body, separators=(",", ":")).encode()


def headers_for(token: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    headers.update(extra or {})
    return headers


def request_bytes(
    endpoint: Endpoint, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {endpoint.host}:{endpoint.port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def close_now(stream: trio.SocketStream, *, reset: bool = False) -> float:
    """Close (FIN, or RST if ``reset``) and return the ``time.monotonic()`` of the close."""
    if reset:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    at = time.monotonic()
    await stream.aclose()
    return at


@dataclass(slots=True)
class Answer:
    status: int
    started: float  # request about to be written
    first_content: float | None  # the first non-empty content (or text delta) arrived
    ended: float  # the end of the answer arrived
    body_bytes: int
    body: bytes | None = None


class H11Client:
    """One keep-alive HTTP/1.1 connection (reopened when the server closes it)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._stream: trio.SocketStream | None = None
        self._conn = h11.Connection(h11.CLIENT)

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
            self._stream = None

    async def _ensure(self) -> trio.SocketStream:
        if self._stream is None or self._conn.our_state is not h11.IDLE:
            await self.aclose()
            self._stream = await trio.open_tcp_stream(self.endpoint.host, self.endpoint.port)
            self._conn = h11.Connection(h11.CLIENT)
        return self._stream

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        keep_body: bool = False,
    ) -> Answer:
        stream = await self._ensure()
        conn = self._conn
        head = [("host", f"{self.endpoint.host}:{self.endpoint.port}"), *headers.items()]
        if body or method == "POST":
            head.append(("content-length", str(len(body))))
        started = time.monotonic()
        out = conn.send(h11.Request(method=method, target=path, headers=head))
        if body:
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        await stream.send_all(out)
        status = 0
        first: float | None = None
        size = 0
        tail = b""
        kept = bytearray() if keep_body else None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    raise ConnectionError("the server closed the connection mid-answer")
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                data = bytes(event.data)
                size += len(data)
                if kept is not None:
                    kept += data
                if first is None and CONTENT.search(tail + data):
                    first = time.monotonic()
                tail = data[-16:]
            elif isinstance(event, h11.EndOfMessage):
                ended = time.monotonic()
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("server closed the connection")
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        return Answer(status, started, first, ended, size, bytes(kept) if kept else None)

    async def get_json(self, path: str) -> Any:
        answer = await self.request("GET", path, {}, keep_body=True)
        if answer.status != 200:
            raise ConnectionError(f"GET {path}: HTTP {answer.status}")
        return json.loads(answer.body or b"null")
