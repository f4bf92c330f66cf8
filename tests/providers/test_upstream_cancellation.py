"""Cancelling a provider closes its upstream connection at once, in every phase, on real sockets.

Each test cancels ``provider.stream`` through a cancel scope once the exchange is in the phase under
test (synchronised on the fake upstream's events and ``wait_all_tasks_blocked``, never on sleeps),
then measures how long until the fake upstream sees the connection close, and checks that the
next request neither fails nor reuses the abandoned connection.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from gateway.settings import ProviderApi
from gateway.testing import FakeUpstream, RequestRecord, Script
from tests.providers.support import (
    Consumer,
    collect,
    open_provider,
    request,
    settings_for,
    text_of,
    unanswered_listener,
)

MAX_LATENCY = 0.1  # seconds from cancel() to the upstream seeing its connection closed

pytestmark = pytest.mark.parametrize("api", ["openai-completions", "anthropic-messages"])


async def in_phase_waiting_for_headers(record: RequestRecord, consumer: Consumer) -> None:
    await record.wait_for("fault")  # the fake read the whole request and hangs
    await trio.testing.wait_all_tasks_blocked()


async def in_phase_before_first_token(record: RequestRecord, consumer: Consumer) -> None:
    await record.wait_for("headers_sent")
    # Once everything is blocked the provider has read the headers and waits for body bytes.
    await trio.testing.wait_all_tasks_blocked()
    assert consumer.texts == 0


async def in_phase_mid_stream(record: RequestRecord, consumer: Consumer) -> None:
    while consumer.texts < 3:
        await consumer.progressed.wait()
        consumer.progressed = trio.Event()
    await trio.testing.wait_all_tasks_blocked()


async def in_phase_emit_blocked(record: RequestRecord, consumer: Consumer) -> None:
    await consumer.blocked.wait()


Phase = Callable[[RequestRecord, Consumer], Awaitable[None]]
PHASES: dict[str, tuple[Script, Phase, int | None]] = {
    "waiting-for-headers": (
        Script(fault="hang_before_headers"),
        in_phase_waiting_for_headers,
        None,
    ),
    "before-first-token": (Script(first_token_delay=3600), in_phase_before_first_token, None),
    "mid-stream": (
        Script(tokens=9, fault="hang_mid_stream", fault_after=3),
        in_phase_mid_stream,
        None,
    ),
    "emit-blocked": (Script(tokens=500, token_delay=0.001), in_phase_emit_blocked, 2),
}


@pytest.mark.parametrize("warm", [False, True], ids=["new-connection", "pooled-connection"])
@pytest.mark.parametrize("phase", list(PHASES))
async def test_cancel_closes_the_upstream_connection_at_once(
    up: FakeUpstream, api: ProviderApi, phase: str, warm: bool
) -> None:
    script, wait_for_phase, block_after = PHASES[phase]
    if warm:
        up.enqueue(Script(text="warm"))
    up.enqueue(script, Script(text="after"))
    target = 1 if warm else 0
    async with open_provider(settings_for(up.base_url, api)) as provider:
        if warm:
            assert text_of(await collect(provider)) == "warm"
        consumer = Consumer(block_after)
        scope = trio.CancelScope()
        returned_at = 0.0

        async def run() -> None:
            nonlocal returned_at
            with scope:
                await provider.stream(request(), consumer)
            returned_at = time.monotonic()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            record = await up.wait_request(target)
            await wait_for_phase(record, consumer)
            cancelled_at = time.monotonic()
            scope.cancel()
            with trio.fail_after(5):
                await record.closed.wait()
        assert scope.cancelled_caught
        assert record.close_cause in ("client_eof", "client_reset")
        assert record.closed_at is not None
        assert record.closed_at - cancelled_at < MAX_LATENCY
        assert returned_at - cancelled_at < MAX_LATENCY
        # The abandoned connection is gone: the next request succeeds on a new one.
        assert text_of(await collect(provider)) == "after"
    connections = [r.connection for r in up.requests]
    assert connections == ([1, 1, 2] if warm else [1, 2])


def open_fds() -> int | None:
    fd_dir = Path("/proc/self/fd")
    return len(os.listdir(fd_dir)) if fd_dir.is_dir() else None


async def test_cancel_while_connecting(api: ProviderApi) -> None:
    async with unanswered_listener() as port:
        settings = settings_for(f"http://127.0.0.1:{port}/v1", api, connect_timeout_seconds=60)
        async with open_provider(settings) as provider:
            before = open_fds()
            cancelled_at: list[float] = []
            with trio.CancelScope() as scope:

                async def cancel_once_connecting() -> None:
                    # Everything blocked for a while: the provider sits in connect().
                    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
                    cancelled_at.append(time.monotonic())
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_once_connecting)
                    await collect(provider)
            returned_at = time.monotonic()
            assert scope.cancelled_caught
            assert returned_at - cancelled_at[0] < MAX_LATENCY
            assert open_fds() == before  # the half-open socket was closed, not leaked
