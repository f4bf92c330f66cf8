"""The body of an upstream response, read under the deadlines of ``upstream_http``: as raw
chunks, as a whole, as an event stream handed to a translator, or drained for reuse.

Every read is bounded: until the first chunk by the first-byte deadline the exchange started,
then by ``idle_timeout`` from the start of each read; an expiry is ``ProviderError("timeout")``.
Time spent in the caller's own code (``emit`` waiting on a slow client) counts for neither.
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import trio

from gateway.providers.base import Emit, ProviderError, protocol_error
from gateway.providers.events import ProviderEvent
from gateway.providers.http11 import (
    Connection,
    ConnectionPool,
    HttpError,
    InvalidResponse,
    ResponseHead,
    Route,
)
from gateway.providers.upstream_sse import SSEDecodeError, SSEDecoder, SSEEvent
from gateway.settings import ProviderSettings

__all__ = ["EventTranslator", "UpstreamBody", "transport_error"]

# The most a whole JSON answer (a model that does not stream) may take.
JSON_LIMIT = 32 * 1024 * 1024
_DRAIN_LIMIT = 64 * 1024
_DRAIN_SECONDS = 2.0


class EventTranslator(Protocol):
    """Turns an API's stream events into provider events; ``done`` once its end marker came."""

    done: bool

    def feed(self, event: SSEEvent) -> list[ProviderEvent]: ...


class UpstreamBody:
    """The body of an upstream response, read chunk by chunk under the deadlines."""

    def __init__(
        self,
        pool: ConnectionPool,
        route: Route,
        connection: Connection,
        head: ResponseHead,
        settings: ProviderSettings,
        deadline: float,
    ) -> None:
        self.content_type: str = head.content_type
        self._pool = pool
        self._route = route
        self._connection = connection
        self._released = False
        self._settings = settings
        self._first_deadline: float | None = deadline

    async def receive_some(self) -> bytes | None:
        """The next non-empty chunk, or ``None`` at the end of the body.

        Raises ``ProviderError`` (``timeout`` on the first-byte or idle deadline, ``upstream`` if
        the connection breaks, ``protocol`` for an invalid body). On cancellation the read stops
        at once; the enclosing ``open_stream`` then closes the connection.
        """
        with trio.CancelScope(deadline=self._read_deadline()):
            chunk = await self._next()
            self._first_deadline = None
            return chunk
        raise self._timeout()

    async def relay_events(self, translator: EventTranslator, emit: Emit) -> None:
        """Decode the body as an event stream and ``emit`` what ``translator`` makes of it, in
        order, until the translator is done (the rest is then drained) or the body ends.

        Raises ``ProviderError`` (``protocol`` for a body that is no event stream, ``timeout``
        as ``receive_some``, or whatever the translator raises). Cancellation, also while
        ``emit`` waits, stops it at once.
        """
        decoder = SSEDecoder()
        # One cancel scope for the whole body, its deadline moved (cheaper than one per read),
        # and lifted while ``emit`` waits: a slow client is not a stalled upstream.
        with trio.CancelScope(deadline=self._read_deadline()) as reading:
            while True:
                chunk = await self._next()
                self._first_deadline = None
                try:
                    events = decoder.feed(chunk) if chunk is not None else decoder.close()
                except SSEDecodeError as exc:
                    raise ProviderError("protocol", str(exc), provider=self._settings.id) from None
                if events:
                    reading.deadline = math.inf
                    for sse in events:
                        for event in translator.feed(sse):
                            await emit(event)
                if chunk is None:
                    return
                if translator.done:
                    break
                reading.deadline = trio.current_time() + self._settings.idle_timeout
        if reading.cancelled_caught:
            raise self._timeout()
        await self.drain()

    async def read_all(self, limit: int) -> bytes:
        """The rest of the body (at most ``limit`` bytes, else ``ProviderError("protocol")``).
        Deadlines, errors and cancellation as ``receive_some``."""
        parts: list[bytes] = []
        size = 0
        with trio.CancelScope(deadline=self._read_deadline()) as reading:
            while (chunk := await self._next()) is not None:
                self._first_deadline = None
                size += len(chunk)
                if size > limit:
                    raise ProviderError(
                        "protocol",
                        f"Provider '{self._settings.id}' sent a response over {limit} bytes",
                        provider=self._settings.id,
                    )
                parts.append(chunk)
                reading.deadline = trio.current_time() + self._settings.idle_timeout
            return b"".join(parts)
        raise self._timeout()

    async def read_json(self, limit: int = JSON_LIMIT) -> Any:
        """The rest of the body as a JSON document (``read_all``); ``ProviderError("protocol")``
        when it is not JSON."""
        try:
            return json.loads(await self.read_all(limit))
        except ValueError:
            raise protocol_error(self._settings.id, "sent invalid JSON") from None

    async def drain(self) -> None:
        """After the logical end of a stream, read what is left (normally just the end of the
        chunked encoding) so the connection can go back to the pool.

        Gives up quietly after a short while or a few KiB: the connection is then closed instead.
        """
        size = 0
        with trio.move_on_after(min(_DRAIN_SECONDS, self._settings.idle_timeout)):
            try:
                while (chunk := await self._next()) is not None:
                    size += len(chunk)
                    if size > _DRAIN_LIMIT:
                        return
            except ProviderError:
                return

    async def read_error_body(self, limit: int) -> bytes:
        """Up to ``limit`` bytes of an error body, before the first-byte deadline; whatever
        arrived if the body breaks or stalls (the status alone is worth reporting)."""
        parts: list[bytes] = []
        size = 0
        with trio.CancelScope(deadline=self._first_deadline or -math.inf):
            try:
                while size < limit and (chunk := await self._next()) is not None:
                    parts.append(chunk)
                    size += len(chunk)
            except ProviderError:
                pass
        return b"".join(parts)[:limit]

    async def aclose(self) -> None:
        """Give the connection back to the pool if the body was read to its end, else close the
        TCP connection at once. Never blocks (nothing to shield); later calls do nothing."""
        if not self._released:
            self._released = True
            self._pool.release(self._route, self._connection)

    async def _next(self) -> bytes | None:
        try:
            return await self._connection.receive_data()
        except HttpError as exc:
            raise transport_error(self._settings.id, exc, "reading the response") from None

    def _read_deadline(self) -> float:
        """When the next read times out: the first-byte deadline until a chunk came, then the
        idle timeout from now."""
        if self._first_deadline is not None:
            return self._first_deadline
        return trio.current_time() + self._settings.idle_timeout

    def _timeout(self) -> ProviderError:
        """The error for an expired read deadline (first byte or idle, see ``_read_deadline``)."""
        pid = self._settings.id
        if self._first_deadline is not None:
            message = (
                f"Provider '{pid}' sent nothing within {self._settings.first_byte_timeout:g} s"
            )
        else:
            message = f"Provider '{pid}' stalled: no data for {self._settings.idle_timeout:g} s"
        return ProviderError("timeout", message, provider=pid)


def transport_error(provider: str, exc: HttpError, during: str) -> ProviderError:
    """Classify a client failure (never a stack trace for the client)."""
    if isinstance(exc, InvalidResponse):
        message = f"Provider '{provider}' sent an invalid response: {exc}"
        return ProviderError("protocol", message, provider=provider)
    message = f"Provider '{provider}' broke the connection while {during}: {exc}"
    return ProviderError("upstream", message, provider=provider)
