"""Cancelling a Responses, Gemini or Ollama provider closes its upstream connection at once, in
every phase, on real sockets (synchronised on the fake upstream's events, never on sleeps), and the
next request neither fails nor reuses the abandoned connection."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from gateway.settings import ProviderApi
from gateway.testing import FakeUpstream, Script
from tests.providers.support import (
    Consumer,
    base_url_for,
    collect,
    open_provider,
    request,
    settings_for,
    text_of,
)

pytestmark = pytest.mark.parametrize("api", ["openai-responses", "google-generative-ai", "ollama"])

MAX_LATENCY = 0.1  # seconds from cancel() to the upstream seeing its connection closed


PHASES: dict[str, tuple[Script, str, int | None]] = {
    "waiting-for-headers": (Script(fault="hang_before_headers"), "fault", None),
    "before-first-token": (Script(first_token_delay=3600), "headers_sent", None),
    "mid-stream": (Script(tokens=9, fault="hang_mid_stream", fault_after=3), "texts", None),
    "emit-blocked": (Script(tokens=500, token_delay=0.001), "blocked", 2),
}


@pytest.mark.parametrize("phase", list(PHASES))
async def test_cancel_closes_the_upstream_connection_at_once(
    up: FakeUpstream, api: ProviderApi, phase: str
) -> None:
    script, signal, block_after = PHASES[phase]
    up.enqueue(Script(text="warm"), script, Script(text="after"))
    async with open_provider(settings_for(base_url_for(up, api), api)) as provider:
        assert text_of(await collect(provider)) == "warm"
        consumer = Consumer(block_after)
        scope = trio.CancelScope()
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                with scope:
                    await provider.stream(request(), consumer)

            nursery.start_soon(run)
            record = await up.wait_request(1)
            if signal == "blocked":
                await consumer.blocked.wait()
            elif signal == "texts":
                while consumer.texts < 3:
                    await consumer.progressed.wait()
                    consumer.progressed = trio.Event()
                await trio.testing.wait_all_tasks_blocked()
            else:
                await record.wait_for(signal)
                await trio.testing.wait_all_tasks_blocked()
            cancelled_at = time.monotonic()
            scope.cancel()
            with trio.fail_after(5):
                await record.closed.wait()
        assert scope.cancelled_caught
        assert record.close_cause in ("client_eof", "client_reset")
        assert record.closed_at is not None and record.closed_at - cancelled_at < MAX_LATENCY
        assert text_of(await collect(provider)) == "after"
    assert [r.connection for r in up.requests] == [1, 1, 2]
