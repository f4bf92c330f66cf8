"""The fake upstream's HTTP/1.1 side: one connection's h11 driver and the routes it answers.

``Connection.run`` reads requests one after the other (keep-alive), hands each to the server for a
``RequestRecord``, answers it by executing its script's steps, and, all the while an answer is in
progress, reads the socket so that a client that leaves (EOF or reset) is recorded at once and
cuts the answer short. See ``fake_upstream`` for the public side.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import TYPE_CHECKING, Any

import h11
import trio

from gateway.testing import fake_upstream_render as render
from gateway.testing.fake_upstream_routes import find_route
from gateway.testing.fake_upstream_script import Close, Hang, Reset, Script, Send, Sleep

if TYPE_CHECKING:
    from gateway.testing.fake_upstream import FakeUpstream, RequestRecord

__all__ = ["Connection"]

_MID_BODY_FAULTS = ("hang_mid_stream", "reset_mid_stream", "close_mid_stream")


class _ClientGone(Exception):
    """Writing failed: the client closed or reset the connection."""


class Connection:
    """One accepted connection: reads requests, answers them, notices when the client leaves."""

    def __init__(self, server: FakeUpstream, stream: trio.SocketStream, number: int) -> None:
        self.server = server
        self.stream = stream
        self.number = number
        self.h11 = h11.Connection(h11.SERVER)
        self.records: list[RequestRecord] = []
        self.closed = False
        self._sent_body = False

    async def run(self) -> None:
        """Serve requests until either side closes; on cancellation (server shutdown) too, the
        socket is closed and every request of the connection marked closed."""
        try:
            while not self.closed:
                request = await self._read_request()
                if request is None:
                    break
                record = self.server.record_request(self.number, *request)
                # Without records kept (benchmarks) only the current one is needed.
                self.records = [*self.records, record] if self.server.keep_records else [record]
                await self._answer(record)
                if self.closed or self.h11.our_state is not h11.DONE:
                    break
                self.h11.start_next_cycle()
        except h11.RemoteProtocolError:
            pass  # a broken request: just hang up
        finally:
            self.mark_closed("server_close")
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    def mark_closed(self, cause: str) -> None:
        """Record that the connection is gone (the first cause wins) for all its requests."""
        if self.closed:
            return
        self.closed = True
        now = time.monotonic()
        for record in self.records:
            if not record.closed.is_set():
                record.closed_at, record.close_cause = now, cause
                self.server.note(record, "closed", cause)
                record.closed.set()
        if not self.records:
            self.server.note(None, "closed", f"connection {self.number}: {cause}")

    async def _read_request(self) -> tuple[h11.Request, bytes] | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                data = await self._receive()
                if data is None:
                    return None
                self.h11.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return head, bytes(body)
            else:
                return None

    async def _receive(self) -> bytes | None:
        """Some bytes from the client, or ``None`` once it closed (recording how)."""
        try:
            data = await self.stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.mark_closed("client_reset")
            return None
        if not data:
            self.mark_closed("client_eof")
            return None
        return data

    async def _answer(self, record: RequestRecord) -> None:
        """Answer while watching the socket: a client that leaves cancels the answer at once."""
        self._sent_body = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_client, nursery.cancel_scope)
            try:
                await _respond(self, record)
            except _ClientGone:
                pass
            finally:
                nursery.cancel_scope.cancel()
        if self.h11.our_state is h11.DONE:
            self.server.note(record, "response_end")
        else:
            self.server.note(record, "aborted")
            self.mark_closed("server_close")
        record.finished.set()

    async def _watch_client(self, answer_scope: trio.CancelScope) -> None:
        while (data := await self._receive()) is not None:
            self.h11.receive_data(data)  # pipelined bytes wait in h11 for the next cycle
        answer_scope.cancel()

    async def send(self, event: h11.Event, record: RequestRecord) -> None:
        """Write one h11 event and log it; raises ``_ClientGone`` if the client is gone."""
        data = self.h11.send(event)
        if not data:
            return
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.mark_closed("client_reset")
            raise _ClientGone from None
        if isinstance(event, h11.Response):
            self.server.note(record, "headers_sent", str(event.status_code))
        elif isinstance(event, h11.Data):
            if not self._sent_body:
                self._sent_body = True
                self.server.note(record, "first_byte")
            elif self.server.log_chunks:
                self.server.note(record, "chunk", str(len(data)))

    async def hang_up(self, record: RequestRecord, *, reset: bool) -> None:
        """Close the connection mid-answer: with an RST if ``reset``, else a plain FIN."""
        self.server.note(record, "fault", "reset" if reset else "close")
        if reset:
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.mark_closed("server_reset" if reset else "server_close")
        await self.stream.aclose()


async def _respond(conn: Connection, record: RequestRecord) -> None:
    """Route one request and send its answer (raises ``_ClientGone`` if the client left)."""
    if record.method == "GET" and record.path.split("?", 1)[0] == "/v1/models":
        models = {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "fake"}]}
        await _send_json(conn, record, 200, models)
        return
    route = find_route(record.method, record.path, record.body)
    if route is None:
        await _send_json(conn, record, 404, {"error": {"message": "Not Found"}})
        return
    try:
        script = _resolve_script(record)
    except (ValueError, TypeError) as exc:
        await _send_json(conn, record, 400, {"error": {"message": f"bad fake knobs: {exc}"}})
        return
    record.script = script
    if script.fault == "hang_before_headers":
        conn.server.note(record, "fault", "hang_before_headers")
        await trio.sleep_forever()
    if script.fault == "close_before_headers":
        await conn.hang_up(record, reset=False)
        return
    await trio.sleep(script.headers_delay)
    if script.status != 200:
        content_type, body = render.error_response(script, route.errors)
        headers = [("content-type", content_type)]
        if script.retry_after is not None:
            headers.append(("retry-after", script.retry_after))
        await _send_whole(conn, record, script.status, headers, body)
        return
    if script.force_json or not route.wants_stream or route.stream is None:
        document = json.dumps(route.whole(script, route.request)).encode()
        await _send_whole_answer(conn, record, script, document)
        return
    steps = route.stream(script, route.request)
    headers = [("content-type", route.stream_type), ("cache-control", "no-cache")]
    await conn.send(h11.Response(status_code=200, headers=headers), record)
    for step in steps:
        if isinstance(step, Send):
            await _send_data(conn, record, step.data, script.split_bytes)
        elif isinstance(step, Sleep):
            await trio.sleep(step.seconds)
        elif isinstance(step, Hang):
            conn.server.note(record, "fault", "hang")
            await trio.sleep_forever()
        elif isinstance(step, Reset | Close):
            await conn.hang_up(record, reset=isinstance(step, Reset))
            return
    await conn.send(h11.EndOfMessage(), record)


async def _send_whole_answer(
    conn: Connection, record: RequestRecord, script: Script, body: bytes
) -> None:
    """A 200 JSON answer: headers, ``first_token_delay``, then the body; a mid-stream fault
    happens after half of it."""
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    await conn.send(h11.Response(status_code=200, headers=headers), record)
    await trio.sleep(script.first_token_delay)
    if script.fault not in _MID_BODY_FAULTS:
        await _send_data(conn, record, body, script.split_bytes)
        await conn.send(h11.EndOfMessage(), record)
        return
    await _send_data(conn, record, body[: len(body) // 2], script.split_bytes)
    if script.fault == "hang_mid_stream":
        conn.server.note(record, "fault", "hang")
        await trio.sleep_forever()
    await conn.hang_up(record, reset=script.fault == "reset_mid_stream")


def _resolve_script(record: RequestRecord) -> Script:
    override: Any = None
    if "x-fake" in record.headers:
        override = json.loads(record.headers["x-fake"])
    elif isinstance(record.body, dict):
        override = record.body.get("fake")
    if override is None:
        return record.script
    if not isinstance(override, dict):
        raise ValueError("the override must be a JSON object")
    return record.script.with_overrides(override)


async def _send_data(conn: Connection, record: RequestRecord, data: bytes, split: int) -> None:
    pieces = [data[i : i + split] for i in range(0, len(data), split)] if split > 0 else [data]
    for piece in pieces:
        await conn.send(h11.Data(data=piece), record)
        if split > 0:
            await trio.lowlevel.checkpoint()  # give the pieces a chance to travel separately


async def _send_json(conn: Connection, record: RequestRecord, status: int, doc: Any) -> None:
    await _send_whole(
        conn, record, status, [("content-type", "application/json")], json.dumps(doc).encode()
    )


async def _send_whole(
    conn: Connection,
    record: RequestRecord,
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
) -> None:
    headers = [*headers, ("content-length", str(len(body)))]
    await conn.send(h11.Response(status_code=status, headers=headers), record)
    await conn.send(h11.Data(data=body), record)
    await conn.send(h11.EndOfMessage(), record)
