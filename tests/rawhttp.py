"""A minimal HTTP/1.1 client on raw trio sockets, for tests that need exact control over when
the connection closes or whether the client reads at all."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import trio

from tests.harness import TOKEN


async def open_request(
    url: str, body: Any, *, path: str = "/v1/chat/completions", token: str | None = TOKEN
) -> trio.SocketStream:
    """Connect and send a POST with a JSON body; returns the open stream."""
    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    data = json.dumps(body).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode() + data)
    return stream


async def read_until(stream: trio.SocketStream, marker: bytes, limit: int = 1 << 20) -> bytes:
    """Read until ``marker`` has been seen; returns everything read."""
    buf = b""
    while marker not in buf:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError(f"connection closed before {marker!r}; got {buf[:500]!r}")
        buf += chunk
        if len(buf) > limit:
            raise AssertionError("response too large")
    return buf
