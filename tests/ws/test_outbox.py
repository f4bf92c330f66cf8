"""The outgoing queue: events dropped when full (seq gap), responses wait, close last."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing

from gateway.ws.outbox import CloseFrame, Outbox
from gateway.ws.protocol import event_frame, ok_response


async def drain(outbox: Outbox) -> list[str | CloseFrame]:
    items = []
    while outbox.statistics().queued:
        items.append(await outbox.get())
    return items


def seqs(items: list[str | CloseFrame]) -> list[int]:
    return [json.loads(i)["seq"] for i in items if isinstance(i, str) and '"seq"' in i]


async def test_events_are_dropped_when_full_leaving_a_gap() -> None:
    outbox = Outbox(max_frames=2, max_chars=1 << 20)
    assert outbox.post_event("tick", {"ts": 1})
    assert outbox.post_event("tick", {"ts": 2})
    assert not outbox.post_event("tick", {"ts": 3})  # full: dropped, seq 3 used up
    assert (await outbox.get()).startswith('{"type":"event"')
    assert outbox.post_event("tick", {"ts": 4})
    assert seqs(await drain(outbox)) == [2, 4]
    stats = outbox.statistics()
    assert (stats.sent_events, stats.dropped_events) == (4, 1)


async def test_the_character_budget_drops_events_too() -> None:
    outbox = Outbox(max_frames=100, max_chars=120)
    assert outbox.post_event("chat", {"t": "x" * 50})
    assert not outbox.post_event("chat", {"t": "x" * 50})
    assert outbox.statistics().queued_chars < 120


async def test_essential_events_use_the_reserve() -> None:
    outbox = Outbox(max_frames=1, max_chars=1 << 20)
    assert outbox.post_event("chat", {"state": "delta"})
    assert not outbox.post_event("chat", {"state": "delta"})
    assert outbox.post_event("chat", {"state": "final"}, essential=True)


async def test_responses_wait_for_room_and_keep_order() -> None:
    outbox = Outbox(max_frames=1, max_chars=1 << 20)
    outbox.post_event("tick", {})
    sent = trio.Event()

    async def respond() -> None:
        await outbox.send_response(ok_response("1", {}))
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(respond)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()  # waiting, not dropped
        first = await outbox.get()
        await sent.wait()
    assert '"event":"tick"' in str(first)
    assert '"type":"res"' in str(await outbox.get())


async def test_close_goes_after_queued_frames_and_refuses_more() -> None:
    outbox = Outbox(max_frames=10, max_chars=1 << 20)
    outbox.post_unsequenced(event_frame("connect.challenge", {"nonce": "n"}))
    await outbox.send_response(ok_response("1", {}))
    outbox.close_with(1008, "bye")
    assert not outbox.accepting
    assert not outbox.post_event("tick", {})
    with pytest.raises(trio.ClosedResourceError):
        await outbox.send_response(ok_response("2", {}))
    items = await drain(outbox)
    assert "seq" not in json.loads(str(items[0]))
    assert items[-1] == CloseFrame(1008, "bye")
    outbox.close_with(1000, "again")  # only one close
    assert outbox.statistics().queued == 0


async def test_shut_wakes_the_writer_and_waiting_responses() -> None:
    outbox = Outbox(max_frames=1, max_chars=1 << 20)
    outbox.post_event("tick", {})
    errors: list[type[BaseException]] = []

    async def respond() -> None:
        try:
            await outbox.send_response(ok_response("1", {}))
        except trio.ClosedResourceError as error:
            errors.append(type(error))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(respond)
        await trio.testing.wait_all_tasks_blocked()
        outbox.shut()
    assert errors == [trio.ClosedResourceError]
    with pytest.raises(trio.EndOfChannel):
        await outbox.get()


async def test_get_waits_for_a_frame() -> None:
    outbox = Outbox(max_frames=4, max_chars=1 << 20)
    got: list[str | CloseFrame] = []

    async def writer() -> None:
        got.append(await outbox.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        outbox.post_event("tick", {"ts": 1})
    assert seqs(got) == [1]
    # A frame written outside the queue still takes the next seq.
    text = outbox.encode_event("shutdown", {})
    assert json.loads(text) == {"type": "event", "event": "shutdown", "payload": {}, "seq": 2}
