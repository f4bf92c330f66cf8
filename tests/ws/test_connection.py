"""Connection helpers that need no socket."""

from __future__ import annotations

import trio

from gateway.ws.connection import only_cancelled


async def test_only_cancelled() -> None:
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.sleep(1)
        except trio.Cancelled as error:
            caught.append(error)
            raise
    [cancelled] = caught
    assert only_cancelled(cancelled)
    assert only_cancelled(BaseExceptionGroup("g", [cancelled]))
    assert not only_cancelled(BaseExceptionGroup("g", [cancelled, ValueError()]))
    assert not only_cancelled(ValueError())
    assert not only_cancelled(None)
