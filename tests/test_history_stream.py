"""The live history body (``gateway.http.history_stream``) driven by hand against a store
double: keepalives on trio's clock, the mark it follows from, how it ends (session gone, store
failure, shutdown after a flush). The real server and stores: ``tests/e2e/test_live_history``."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from gateway.errors import GatewayError
from gateway.http.history_sse import KEEPALIVE, message_events
from gateway.http.history_stream import FLUSH_SECONDS, HistoryStream, HistoryStreams
from gateway.sessions.base import TranscriptEntry, TranscriptMark


def entry(seq: int, text: str) -> TranscriptEntry:
    return TranscriptEntry(seq, {"role": "user", "content": text}, f"r{seq}", "complete", seq)


class Store:
    """``wait_appended`` over a list the test appends to (and can end or break)."""

    def __init__(self) -> None:
        self.entries: list[TranscriptEntry] = []
        self.changed = trio.Event()
        self.gone = False
        self.broken: GatewayError | None = None
        self.marks: list[TranscriptMark] = []

    def append(self, *entries: TranscriptEntry) -> None:
        self.entries.extend(entries)
        self.changed.set()
        self.changed = trio.Event()

    async def wait_appended(
        self, key: str, after: TranscriptMark, limit: int
    ) -> Sequence[TranscriptEntry] | None:
        self.marks.append(after)
        while True:
            if self.broken is not None:
                raise self.broken
            if self.gone:
                return None
            found = [e for e in self.entries if e.seq > after.seq][:limit]
            if found:
                return found
            await self.changed.wait()


def open_stream(store: Store, streams: HistoryStreams, heartbeat: float = 5.0) -> HistoryStream:
    return HistoryStream(
        store,  # type: ignore[arg-type]
        "s1",
        b"FIRST",
        TranscriptMark(2, "r2"),
        lambda: heartbeat,
        streams,
    )


async def test_snapshot_then_appends_then_keepalives(autojump_clock: trio.abc.Clock) -> None:
    store, streams = Store(), HistoryStreams()
    store.entries = [entry(1, "old"), entry(2, "snapshot's last")]
    stream = open_stream(store, streams)
    assert await stream.__anext__() == b"FIRST"
    store.append(entry(3, "u"), entry(4, "reply"))
    assert await stream.__anext__() == message_events("s1", [entry(3, "u"), entry(4, "reply")])
    began = trio.current_time()
    assert await stream.__anext__() == KEEPALIVE
    assert trio.current_time() - began == 5.0
    assert store.marks == [TranscriptMark(2, "r2"), TranscriptMark(4, "r4")]

    async def append_later() -> None:
        await trio.sleep(1)
        store.append(entry(5, "later"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(append_later)
        assert await stream.__anext__() == message_events("s1", [entry(5, "later")])
    assert streams.waiting == 0


async def test_a_session_gone_ends_the_stream() -> None:
    store, streams = Store(), HistoryStreams()
    stream = open_stream(store, streams)
    await stream.__anext__()
    store.gone = True
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_a_store_failure_ends_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    store, streams = Store(), HistoryStreams()
    stream = open_stream(store, streams)
    await stream.__anext__()
    store.broken = GatewayError("The session store is unavailable; try again shortly.")
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    assert "live history of s1 ends: The session store is unavailable" in caplog.text


async def test_shutdown_sends_what_came_then_ends(autojump_clock: trio.abc.Clock) -> None:
    store, streams = Store(), HistoryStreams()
    waiting, late = open_stream(store, streams), open_stream(store, streams)
    for stream in (waiting, late):
        await stream.__anext__()
    got: list[bytes] = []

    async def drain(stream: HistoryStream) -> None:
        async for chunk in stream:
            got.append(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain, waiting)
        await trio.testing.wait_all_tasks_blocked()
        assert streams.waiting == 1
        began = trio.current_time()
        streams.close()
        store.append(entry(3, "recorded as the run ended"))  # during the flush
    assert got == [message_events("s1", [entry(3, "recorded as the run ended")])]
    assert trio.current_time() - began < FLUSH_SECONDS
    # A stream that waits after the shutdown began ends after its flush, with nothing new.
    began = trio.current_time()
    assert await late.__anext__() == message_events("s1", [entry(3, "recorded as the run ended")])
    with pytest.raises(StopAsyncIteration):
        await late.__anext__()
    assert trio.current_time() - began == pytest.approx(FLUSH_SECONDS)
    assert streams.waiting == 0
