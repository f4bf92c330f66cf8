"""Error mapping, deadlines and connection handling, for both providers, on real sockets."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from gateway.providers.base import ProviderError
from gateway.settings import ProviderApi
from gateway.testing import FakeUpstream, Script
from tests.providers.support import (
    collect,
    open_provider,
    request,
    settings_for,
    text_of,
    unanswered_listener,
)

pytestmark = pytest.mark.parametrize("api", ["openai-completions", "anthropic-messages"])


async def failure(
    up: FakeUpstream, api: ProviderApi, script: Script, **fields: Any
) -> ProviderError:
    up.script = script
    async with open_provider(settings_for(up.base_url, api, **fields)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.provider == "fake"
    return caught.value


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_bad_request_carries_the_upstream_message(
    up: FakeUpstream, api: ProviderApi, status: int
) -> None:
    error = await failure(up, api, Script(status=status, error_message="max_tokens: too big"))
    assert (error.kind, error.status, error.upstream_status) == ("bad_request", 400, status)
    assert error.message == "max_tokens: too big"


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failure_is_502_naming_the_provider(
    up: FakeUpstream, api: ProviderApi, status: int
) -> None:
    error = await failure(up, api, Script(status=status, error_message="invalid x-api-key"))
    assert (error.kind, error.status) == ("auth", 502)
    assert "'fake'" in error.message
    assert "invalid x-api-key" not in error.message


async def test_rate_limit_keeps_retry_after(up: FakeUpstream, api: ProviderApi) -> None:
    error = await failure(up, api, Script(status=429, retry_after="17", error_message="slow"))
    assert (error.kind, error.status, error.retry_after) == ("rate_limited", 429, 17.0)
    assert error.headers() == {"Retry-After": "17"}


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_server_errors_are_502(up: FakeUpstream, api: ProviderApi, status: int) -> None:
    error = await failure(up, api, Script(status=status, error_message="internal"))
    assert (error.kind, error.status) == ("upstream", 502)
    assert error.message == f"Provider 'fake' answered HTTP {status}: internal"


async def test_html_error_page(up: FakeUpstream, api: ProviderApi) -> None:
    error = await failure(up, api, Script(status=502, error_content_type="text/html"))
    assert (error.kind, error.status) == ("upstream", 502)
    assert "<" not in error.message
    assert "text/html" in error.message


async def test_garbage_error_body(up: FakeUpstream, api: ProviderApi) -> None:
    error = await failure(
        up, api, Script(status=500, error_body="\x00\x01{", error_content_type="application/json")
    )
    assert error.message == "Provider 'fake' answered HTTP 500: \x00\x01{"


async def test_connection_refused(api: ProviderApi) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connecting is refused
        settings = settings_for(f"http://127.0.0.1:{port}/v1", api)
        async with open_provider(settings) as provider:
            with pytest.raises(ProviderError) as caught:
                await collect(provider)
    assert (caught.value.kind, caught.value.status, caught.value.provider) == (
        "connect",
        502,
        "fake",
    )
    assert "'fake'" in caught.value.message


async def test_invalid_base_url(api: ProviderApi) -> None:
    async with open_provider(settings_for("ftp://example.invalid", api)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == "connect"


async def test_connect_timeout(api: ProviderApi) -> None:
    async with unanswered_listener() as port:
        settings = settings_for(f"http://127.0.0.1:{port}/v1", api, connect_timeout_seconds=0.3)
        async with open_provider(settings) as provider:
            start = trio.current_time()
            with pytest.raises(ProviderError) as caught:
                await collect(provider)
    assert trio.current_time() - start == pytest.approx(0.3, abs=0.1)
    assert (caught.value.kind, caught.value.status) == ("timeout", 504)
    assert caught.value.message == "Could not connect to provider 'fake' within 0.3 s"


@pytest.mark.parametrize(
    "script",
    [Script(headers_delay=60), Script(first_token_delay=60), Script(fault="hang_before_headers")],
    ids=["before-headers", "after-headers", "hang"],
)
async def test_first_byte_timeout(
    up: FakeUpstream, api: ProviderApi, script: Script, autojump_clock: trio.abc.Clock
) -> None:
    start = trio.current_time()
    error = await failure(up, api, script, first_byte_timeout_seconds=5.0)
    assert trio.current_time() - start == pytest.approx(5.0, abs=0.1)
    assert (error.kind, error.status) == ("timeout", 504)
    assert error.message == "Provider 'fake' sent nothing within 5 s"
    closed = await up.wait_closed(0)
    assert closed.close_cause == "client_eof"


async def test_idle_timeout(
    up: FakeUpstream, api: ProviderApi, autojump_clock: trio.abc.Clock
) -> None:
    up.script = Script(tokens=5, fault="hang_mid_stream", fault_after=2)
    settings = settings_for(up.base_url, api, first_byte_timeout_seconds=50, idle_timeout_seconds=7)
    seen: list[object] = []

    async def emit(event: object) -> None:
        seen.append(event)

    async with open_provider(settings) as provider:
        start = trio.current_time()
        with pytest.raises(ProviderError) as caught:
            await provider.stream(request(), emit)
    assert trio.current_time() - start == pytest.approx(7.0, abs=0.1)
    assert (caught.value.kind, caught.value.message) == (
        "timeout",
        "Provider 'fake' stalled: no data for 7 s",
    )
    assert text_of(seen) == "w0 w1"  # type: ignore[arg-type]
    assert (await up.wait_closed(0)).close_cause == "client_eof"


async def test_slow_but_steady_stream_is_not_idle(
    up: FakeUpstream, api: ProviderApi, autojump_clock: trio.abc.Clock
) -> None:
    up.script = Script(tokens=5, first_token_delay=4, token_delay=4)
    settings = settings_for(up.base_url, api, first_byte_timeout_seconds=5, idle_timeout_seconds=5)
    async with open_provider(settings) as provider:
        assert text_of(await collect(provider)) == "w0 w1 w2 w3 w4"


async def test_a_slow_consumer_is_not_a_stalled_upstream(
    up: FakeUpstream, api: ProviderApi, autojump_clock: trio.abc.Clock
) -> None:
    """The read deadlines cover the upstream only: time spent in ``emit`` (a client that
    reads slowly) counts for neither the first-byte nor the idle deadline."""
    up.script = Script(tokens=3, token_delay=1)
    settings = settings_for(up.base_url, api, first_byte_timeout_seconds=5, idle_timeout_seconds=5)
    seen: list[object] = []

    async def slow_emit(event: object) -> None:
        await trio.sleep(20)
        seen.append(event)

    async with open_provider(settings) as provider:
        await provider.stream(request(), slow_emit)
    assert text_of(seen) == "w0 w1 w2"  # type: ignore[arg-type]


@pytest.mark.parametrize("fault", ["reset_mid_stream", "close_mid_stream"])
async def test_broken_stream(up: FakeUpstream, api: ProviderApi, fault: str) -> None:
    error = await failure(up, api, Script(tokens=4).with_overrides({"fault": fault}))
    assert (error.kind, error.status) == ("upstream", 502)
    assert error.message.startswith("Provider 'fake' broke the connection while reading")


async def test_closed_before_answering_on_a_fresh_connection(
    up: FakeUpstream, api: ProviderApi
) -> None:
    error = await failure(up, api, Script(fault="close_before_headers"))
    assert error.kind == "upstream"
    assert len(up.requests) == 1  # a fresh connection is not retried


async def test_pooled_connection_found_dead_is_retried_once(
    up: FakeUpstream, api: ProviderApi
) -> None:
    up.enqueue(Script(text="one"), Script(fault="close_before_headers"), Script(text="two"))
    async with open_provider(settings_for(up.base_url, api)) as provider:
        assert text_of(await collect(provider)) == "one"
        assert text_of(await collect(provider)) == "two"
    assert [record.connection for record in up.requests] == [1, 1, 2]


async def test_error_body_read_fully_keeps_the_connection(
    up: FakeUpstream, api: ProviderApi
) -> None:
    up.enqueue(Script(status=400))
    async with open_provider(settings_for(up.base_url, api)) as provider:
        with pytest.raises(ProviderError):
            await collect(provider)
        await collect(provider)
    assert [record.connection for record in up.requests] == [1, 1]


async def test_huge_error_body_is_not_read_and_closes_the_connection(
    up: FakeUpstream, api: ProviderApi
) -> None:
    up.enqueue(Script(status=500, error_body="x" * 1_000_000, error_content_type="text/plain"))
    async with open_provider(settings_for(up.base_url, api)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
        assert len(caught.value.message) <= 500
        assert (await up.wait_closed(0)).close_cause in ("client_eof", "client_reset")
        await collect(provider)
    assert [record.connection for record in up.requests] == [1, 2]


async def test_after_a_timeout_the_next_request_uses_a_new_connection(
    up: FakeUpstream, api: ProviderApi, autojump_clock: trio.abc.Clock
) -> None:
    up.enqueue(Script(text="warm"), Script(fault="hang_mid_stream"), Script(text="fine"))
    settings = settings_for(up.base_url, api, idle_timeout_seconds=3)
    async with open_provider(settings) as provider:
        assert text_of(await collect(provider)) == "warm"
        with pytest.raises(ProviderError, match="stalled"):
            await collect(provider)
        assert (await up.wait_closed(1)).close_cause == "client_eof"
        assert text_of(await collect(provider)) == "fine"
    assert [record.connection for record in up.requests] == [1, 1, 2]
