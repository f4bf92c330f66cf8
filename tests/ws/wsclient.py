"""A small WebSocket client on ``wsproto`` over a trio TCP stream, for the e2e tests.

It reads only when asked (no background task), so a test decides exactly when frames are
consumed, answers pings, records the server's close, and can send an empty close frame like the
OpenClaw CLI does. ``Operator`` adds the protocol: handshake, requests, events. ``client_frame``
builds frames by hand, broken ones included, to write on ``WsClient.stream``.
"""

from __future__ import annotations

import itertools
import json
import struct
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason

from tests.harness import TOKEN

Frame = dict[str, Any]

MASK = b"\x37\xfa\x21\x3d"


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One client frame on the wire (``rsv``: the three RSV bits, RSV1 highest), with no
    check of what RFC 6455 allows."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        head += bytes([mask_bit | len(payload)])
    elif len(payload) < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", len(payload))
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


# Frames a client must not send (no extension negotiated): name → (the bytes, the close code
# RFC 6455 calls for).
BROKEN_FRAMES = {
    "invalid UTF-8 text": (client_frame(0x1, b'{"a": "\xff\xfe"}'), 1007),
    "RSV1 without extension": (client_frame(0x1, b"{}", rsv=0b100), 1002),
    "RSV2": (client_frame(0x1, b"{}", rsv=0b010), 1002),
    "RSV3": (client_frame(0x1, b"{}", rsv=0b001), 1002),
    "unmasked client frame": (client_frame(0x1, b"{}", masked=False), 1002),
    "unknown opcode 0x3": (client_frame(0x3, b"x"), 1002),
    "fragmented ping": (client_frame(0x9, b"p", fin=False), 1002),
    "126-byte ping": (client_frame(0x9, b"p" * 126), 1002),
}


class Closed(Exception):
    """The server closed the connection; ``code`` ``None`` for an empty close frame."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed: {code} {reason!r}")
        self.code = code
        self.reason = reason


class WsClient:
    def __init__(self, stream: trio.SocketStream, conn: WSConnection) -> None:
        self.stream = stream
        self.conn = conn
        self.messages: deque[str] = deque()
        self.close: Closed | None = None
        self.pings = 0
        self._partial: list[str] = []

    @classmethod
    async def connect(
        cls, url: str, path: str = "/", headers: list[tuple[bytes, bytes]] | None = None
    ) -> WsClient:
        """Open a connection; ``headers`` are added to the upgrade request."""
        parts = urlsplit(url)
        stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
        conn = WSConnection(ConnectionType.CLIENT)
        request = Request(host=parts.netloc, target=path, extra_headers=headers or [])
        await stream.send_all(conn.send(request))
        client = cls(stream, conn)
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during the upgrade")
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, AcceptConnection):
                    # Frames that came in the same read as the 101 (the server's first
                    # message, often) wait in wsproto's buffer: take them in now.
                    await client._take_events()
                    return client
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"upgrade refused: {event.status_code}")

    async def send_text(self, text: str) -> None:
        await self.stream.send_all(self.conn.send(TextMessage(data=text)))

    async def send_json(self, frame: Frame) -> None:
        await self.send_text(json.dumps(frame))

    async def receive_text(self) -> str:
        """The next message; raises ``Closed`` once the server has closed."""
        while not self.messages:
            if self.close is not None:
                raise self.close
            await self._pump()
        return self.messages.popleft()

    async def receive_json(self) -> Frame:
        frame: Frame = json.loads(await self.receive_text())
        return frame

    async def wait_closed(self) -> Closed:
        """Read (discarding messages) until the server closes; returns its close."""
        while self.close is None:
            self.messages.clear()
            await self._pump()
        return self.close

    async def send_close(self, code: int | None = None) -> Closed:
        """Send a close frame (empty when ``code`` is ``None``) and wait for the server's."""
        if self.conn.state is ConnectionState.OPEN:
            # wsproto sends an empty close only for the enum member itself.
            event = CloseConnection(code=code if code is not None else CloseReason.NO_STATUS_RCVD)
            await self.stream.send_all(self.conn.send(event))
        return await self.wait_closed()

    async def aclose(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        await self.stream.aclose()

    async def _pump(self) -> None:
        data = await self.stream.receive_some(1 << 20)
        if not data:
            self.close = self.close or Closed(1006, "connection dropped")
            return
        self.conn.receive_data(data)
        await self._take_events()

    async def _take_events(self) -> None:
        for event in self.conn.events():
            if isinstance(event, TextMessage | BytesMessage):
                text = event.data if isinstance(event.data, str) else event.data.decode()
                self._partial.append(text)
                if event.message_finished:
                    self.messages.append("".join(self._partial))
                    self._partial.clear()
            elif isinstance(event, Ping):
                self.pings += 1
                await self.stream.send_all(self.conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                code = None if event.code == 1005 else event.code
                self.close = Closed(code, event.reason or "")
                if self.conn.state is ConnectionState.REMOTE_CLOSING:
                    await self.stream.send_all(self.conn.send(event.response()))


def connect_params(*, token: str | None = TOKEN, scopes: list[str] | None = None) -> Frame:
    """Connect params as the OpenClaw CLI sends them."""
    params: Frame = {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {
            "id": "cli",
            "version": "2026.9.6",
            "platform": "linux",
            "mode": "cli",
            "instanceId": str(uuid.uuid4()),
        },
        "caps": [],
        "role": "operator",
        "scopes": scopes if scopes is not None else ["operator.admin"],
    }
    if token is not None:
        params["auth"] = {"token": token}
    return params


@dataclass
class Operator:
    """A connected, authenticated client. ``events`` keeps every event read so far."""

    ws: WsClient
    hello: Frame
    challenge: Frame
    events: list[Frame] = field(default_factory=list)
    responses: list[Frame] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(2))

    @classmethod
    async def open(cls, url: str, **params: Any) -> Operator:
        ws = await WsClient.connect(url)
        challenge = await ws.receive_json()
        await ws.send_json(
            {
                "type": "req",
                "id": "1:connect",
                "method": "connect",
                "params": connect_params(**params),
            }
        )
        hello = await ws.receive_json()
        assert hello["ok"], hello
        return cls(ws, hello, challenge)

    async def send(self, method: str, params: Frame | None = None) -> str:
        request_id = f"{next(self._ids)}:{uuid.uuid4()}"
        frame: Frame = {"type": "req", "id": request_id, "method": method}
        if params is not None:
            frame["params"] = params
        await self.ws.send_json(frame)
        return request_id

    async def next_frame(self) -> Frame:
        frame = await self.ws.receive_json()
        if frame["type"] == "event":
            self.events.append(frame)
        else:
            self.responses.append(frame)
        return frame

    async def response(self, request_id: str) -> Frame:
        """The next response to ``request_id`` (events read meanwhile go to ``events``)."""
        for i, frame in enumerate(self.responses):
            if frame["id"] == request_id:
                return self.responses.pop(i)
        while True:
            frame = await self.next_frame()
            if frame["type"] == "res" and frame["id"] == request_id:
                self.responses.pop()
                return frame

    async def call(self, method: str, params: Frame | None = None) -> Frame:
        return await self.response(await self.send(method, params))

    async def event(self, name: str, **match: Any) -> Frame:
        """The next event ``name`` whose payload has the ``match`` items (or ``data.phase``
        via ``phase=``)."""
        while True:
            frame = await self.next_frame()
            if frame["type"] != "event" or frame["event"] != name:
                continue
            payload = frame["payload"]
            phase = match.get("phase")
            if phase is not None and payload.get("data", {}).get("phase") != phase:
                continue
            if all(payload.get(k) == v for k, v in match.items() if k != "phase"):
                return frame
