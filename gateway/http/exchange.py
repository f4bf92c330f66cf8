"""One HTTP exchange at the ASGI level, for the routes served without Quart.

The completion APIs are the hot path: every request there costs Quart's request and response
objects, its contexts, its routing and two tasks of quart-trio's. Served directly on ASGI they
cost one task (the disconnect watch) and what the route itself does. ``GatewayASGI`` still wraps
them (request id, security headers, CORS, the access log, the request nursery).

An ``Exchange`` reads the request (headers, the body under a size limit and a deadline) and
writes the response (whole, or started and then written piece by piece). Errors on the way in
are ``GatewayError``s (413, 408, ...) the route answers with ``respond_error``.

Disconnects: once the body is read, ``watch_disconnect`` (a task in the request nursery) cancels
the nursery when the client goes away, so the route and its run stop at once, as quart-trio does
for its routes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, cast

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

from gateway.client_address import scope_client
from gateway.errors import GatewayError

Headers = list[tuple[bytes, bytes]]


class ClientGone(Exception):
    """The client went away before the request was read: nobody to answer."""


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
JSON_TYPE = (b"content-type", b"application/json")


def json_bytes(document: Any) -> bytes:
    # ``backslashreplace`` turns a lone surrogate (from a model's output) into its JSON escape
    # ``\\udXXX`` instead of failing the response.
    return _dumps(document).encode("utf-8", "backslashreplace")


def header_list(headers: Mapping[str, str] | None) -> Headers:
    if not headers:
        return []
    return [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]


class Exchange:
    """The request and the response of one ASGI HTTP exchange (see the module docstring)."""

    __slots__ = ("_receive", "_send", "method", "path", "scope", "started")

    def __init__(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        self.scope = scope
        self.method = scope["method"]
        self.path = scope["path"]
        self._receive = receive
        self._send = send
        self.started = False

    def header(self, name: bytes) -> str | None:
        """The first value of the (lower-case) header ``name``."""
        for key, value in self.scope["headers"]:
            if key.lower() == name:
                return bytes(value).decode("latin-1")
        return None

    @property
    def client_host(self) -> str | None:
        """The client's address (behind a trusted proxy, the forwarded client)."""
        return scope_client(self.scope)

    @property
    def server_host(self) -> str | None:
        server = self.scope.get("server")
        return server[0] if server else None

    async def read_body(self, limit: int, within: float) -> bytes:
        """The whole request body. ``GatewayError`` 413 when it is over ``limit`` bytes (decided
        from ``Content-Length`` before reading when it is given; a chunked body is not read past
        the limit), 408 when it takes longer than ``within`` seconds to arrive; ``ClientGone``
        when the client leaves first."""
        length = self.header(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _too_large(int(length), limit)
        parts: list[bytes] = []
        size = 0
        with trio.move_on_after(within) as deadline:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunk = cast(bytes, message.get("body", b""))
                if chunk:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(size, limit)
                    parts.append(chunk)
                if not message.get("more_body", False):
                    return parts[0] if len(parts) == 1 else b"".join(parts)
        assert deadline.cancelled_caught
        raise GatewayError(
            f"The request body did not arrive within {within:g} s.",
            status=408,
            type_="invalid_request_error",
        )

    async def watch_disconnect(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` when the client goes away (call after the body was read)."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return

    async def respond(
        self, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        """A whole response."""
        self.started = True
        await self._send(
            {"type": "http.response.start", "status": status, "headers": list(headers)}
        )
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def respond_json(
        self, document: Any, status: int = 200, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        await self.respond(status, json_bytes(document), [JSON_TYPE, *headers])

    async def respond_error(
        self, error: GatewayError, headers: Mapping[str, str] | None = None
    ) -> None:
        """``error`` as an OpenAI error body with its status (and ``Retry-After``)."""
        extra = header_list({**error.headers(), **(headers or {})})
        await self.respond_json(error.body(), error.status, extra)

    async def start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Start a streamed response; then ``write`` its pieces and ``finish`` it."""
        self.started = True
        await self._send(
            {"type": "http.response.start", "status": status, "headers": list(headers)}
        )

    async def write(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def finish(self, data: bytes = b"") -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": False})


def _too_large(size: int, limit: int) -> GatewayError:
    return GatewayError(
        f"Request body too large: {size} bytes (limit {limit}).",
        status=413,
        type_="invalid_request_error",
    )
