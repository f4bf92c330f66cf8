"""A connection's bounded outgoing queue, drained by the connection's writer task.

What is never dropped: responses (``send_response`` waits for room, so a client that does not
read stops its own requests, not anybody's run) and the close. What is dropped when the queue is
full: events (``post_event`` never waits, so a slow client never stalls a run; the frame ``seq``
it had taken is skipped, leaving a gap the client can see). Events marked essential (a run's
end) may use a small reserve beyond the limits before they are dropped too.

Queued text is measured in characters (what the queue holds), not encoded bytes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import trio

from gateway.ws.protocol import EventFrame, ResponseFrame, encode, event_frame

# How many essential events may go beyond the limits.
_RESERVE = 64


@dataclass(frozen=True, slots=True)
class CloseFrame:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    queued: int
    queued_chars: int
    sent_events: int
    dropped_events: int


class Outbox:
    """Frames waiting for the writer, in order. ``seq`` numbers events from 1."""

    def __init__(self, max_frames: int, max_chars: int) -> None:
        self._items: deque[str | CloseFrame] = deque()
        self._chars = 0
        self._max_frames = max_frames
        self._max_chars = max_chars
        self._seq = 0
        self._dropped = 0
        self._closing = False  # a close is queued: nothing more goes in
        self._shut = False  # the connection is over: nothing goes in or out
        self._readable = trio.lowlevel.ParkingLot()
        self._writable = trio.lowlevel.ParkingLot()

    @property
    def accepting(self) -> bool:
        return not (self._closing or self._shut)

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(len(self._items), self._chars, self._seq, self._dropped)

    def post_event(self, event: str, payload: Any, *, essential: bool = False) -> bool:
        """Queue an event unless the queue is full; never waits. Returns whether it was queued
        (a dropped event still used up its ``seq``)."""
        if not self.accepting:
            return False
        self._seq += 1
        text = encode(event_frame(event, payload, self._seq))
        reserve = _RESERVE if essential else 0
        if (
            len(self._items) >= self._max_frames + reserve
            or self._chars + len(text) > self._max_chars + reserve * 65536
        ):
            self._dropped += 1
            return False
        self._push(text)
        return True

    def encode_event(self, event: str, payload: Any) -> str:
        """An event with the next ``seq``, for writing outside the queue (a last goodbye)."""
        self._seq += 1
        return encode(event_frame(event, payload, self._seq))

    def post_unsequenced(self, frame: EventFrame) -> None:
        """Queue an event without ``seq`` (the challenge, the connection's first frame)."""
        if self.accepting:
            self._push(encode(frame))

    async def send_response(self, frame: ResponseFrame) -> None:
        """Queue a response, waiting while the queue is full. Raises ``trio.ClosedResourceError``
        once the connection is closing or over (cancellable while waiting)."""
        await trio.lowlevel.checkpoint()
        while self.accepting and len(self._items) >= self._max_frames:
            await self._writable.park()
        if not self.accepting:
            raise trio.ClosedResourceError("the connection is closing")
        self._push(encode(frame))

    def close_with(self, code: int, reason: str) -> None:
        """Queue the close after everything already queued; later frames are refused."""
        if self.accepting:
            self._closing = True
            self._items.append(CloseFrame(code, reason))
            self._readable.unpark_all()
            self._writable.unpark_all()

    def shut(self) -> None:
        """The connection is over: drop what is queued and refuse everything from now on."""
        self._shut = True
        self._items.clear()
        self._chars = 0
        self._readable.unpark_all()
        self._writable.unpark_all()

    async def get(self) -> str | CloseFrame:
        """The next frame to write; raises ``trio.EndOfChannel`` once shut."""
        while not self._items:
            if self._shut:
                raise trio.EndOfChannel
            await self._readable.park()
        await trio.lowlevel.checkpoint()
        if self._shut:
            raise trio.EndOfChannel
        item = self._items.popleft()
        if isinstance(item, str):
            self._chars -= len(item)
        self._writable.unpark()
        return item

    def _push(self, text: str) -> None:
        self._items.append(text)
        self._chars += len(text)
        self._readable.unpark()
