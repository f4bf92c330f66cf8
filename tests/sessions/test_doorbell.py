from __future__ import annotations

import trio

from gateway.sessions._doorbell import Doorbell


async def test_a_ring_wakes_the_owner() -> None:
    mine, theirs = Doorbell("a" * 16), Doorbell("b" * 16)
    assert await mine.open() and await theirs.open()
    try:
        theirs.ring("a" * 16)
        with trio.fail_after(1):
            await mine.wait()
        # Ringing yourself, a dead owner or a stranger is a harmless no-op.
        mine.ring("a" * 16)
        mine.ring("0" * 16)
        with trio.move_on_after(0.02) as idle:
            await mine.wait()
        assert idle.cancelled_caught
    finally:
        mine.close()
        theirs.close()


async def test_a_taken_name_falls_back_to_polling() -> None:
    first, second = Doorbell("c" * 16), Doorbell("c" * 16)
    assert await first.open()
    try:
        assert not await second.open()
        second.ring("c" * 16)  # no sender: silently nothing
        with trio.move_on_after(0.01) as idle:
            await second.wait()  # never returns
        assert idle.cancelled_caught
    finally:
        first.close()
        second.close()
