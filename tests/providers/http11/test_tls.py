"""TLS toward ``https://`` upstreams, with a throwaway CA (trustme): verification on by default,
an unknown CA or a wrong host name refused, a trusted one working through the real provider,
SNI and ALPN ``http/1.1`` sent, keep-alive over TLS, and a stalled handshake bounded by the
connect deadline."""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing

from gateway.providers.base import ProviderError
from gateway.providers.http11 import ConnectError, ConnectionPool, default_ssl_context
from gateway.providers.openai_completions import OpenAICompletionsProvider
from gateway.providers.upstream_http import UpstreamHttp
from gateway.testing import FakeUpstream, Script
from tests.providers.http11.support import (
    SSE_OK,
    answering,
    exchange,
    make_tls,
    relay_to,
    start_raw_server,
)
from tests.providers.support import collect, settings_for, text_of
from tests.providers.test_upstream_cancellation import open_fds


def test_the_default_context_verifies_and_offers_http_1_1_only() -> None:
    context = default_ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0  # the system's trust store
    # ALPN is not readable back from a context: the handshake tests below check what is sent.


async def test_a_trusted_ca_works_and_sni_alpn_are_sent(
    nursery: trio.Nursery, up: FakeUpstream
) -> None:
    tls = make_tls()
    server = await start_raw_server(nursery, relay_to(up.port, tls), tls=tls.server)
    up.enqueue(Script(text="over tls"), Script(text="again"))
    settings = settings_for(f"https://localhost:{server.port}/v1")
    http = UpstreamHttp(settings, ssl_context=tls.client())
    provider = OpenAICompletionsProvider(settings, http=http)
    try:
        assert text_of(await collect(provider)) == "over tls"
        assert text_of(await collect(provider)) == "again"
    finally:
        await provider.aclose()
    assert tls.sni == ["localhost"]
    assert tls.alpn == ["http/1.1"]  # offered alone, although the server prefers h2
    assert server.accepted == 1  # keep-alive over TLS
    assert [record.connection for record in up.requests] == [1, 1]


async def test_an_ip_address_is_verified_too(nursery: trio.Nursery) -> None:
    tls = make_tls("127.0.0.1")
    server = await start_raw_server(nursery, answering(SSE_OK), tls=tls.server)
    pool = ConnectionPool(ssl_context=tls.client())
    assert await exchange(pool, f"https://127.0.0.1:{server.port}/v1") == (
        200,
        b"data: hi\n\n",
        False,
    )
    assert tls.sni == [None]  # no SNI for an address
    pool.close()


async def test_an_unknown_ca_is_refused_by_default(nursery: trio.Nursery) -> None:
    tls = make_tls()
    server = await start_raw_server(nursery, answering(SSE_OK), tls=tls.server)
    pool = ConnectionPool()  # the default context: the system's CAs only
    with pytest.raises(ConnectError, match="certificate verify failed"):
        await exchange(pool, f"https://localhost:{server.port}/v1")


async def test_a_certificate_for_another_name_is_refused(nursery: trio.Nursery) -> None:
    tls = make_tls("other.example")
    server = await start_raw_server(nursery, answering(SSE_OK), tls=tls.server)
    pool = ConnectionPool(ssl_context=tls.client())
    with pytest.raises(ConnectError, match=r"certificate verify failed.*match"):
        await exchange(pool, f"https://localhost:{server.port}/v1")


async def test_an_unknown_ca_is_a_connect_error_of_the_provider(nursery: trio.Nursery) -> None:
    tls = make_tls()
    server = await start_raw_server(nursery, answering(SSE_OK), tls=tls.server)
    settings = settings_for(f"https://localhost:{server.port}/v1")
    provider = OpenAICompletionsProvider(settings)
    try:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    finally:
        await provider.aclose()
    assert (caught.value.kind, caught.value.status) == ("connect", 502)
    assert caught.value.message.startswith("Could not connect to provider 'fake': TLS with")
    assert "certificate verify failed" in caught.value.message


async def test_plain_http_answer_to_tls_is_a_connect_error(nursery: trio.Nursery) -> None:
    server = await start_raw_server(nursery, answering(SSE_OK))
    pool = ConnectionPool(ssl_context=make_tls().client())
    with pytest.raises(ConnectError, match="TLS with localhost failed"):
        await exchange(pool, f"https://localhost:{server.port}/v1")


async def never_speak(stream: trio.abc.Stream) -> None:
    await trio.sleep_forever()


async def test_a_stalled_handshake_is_a_connect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    server = await start_raw_server(nursery, never_speak)
    settings = settings_for(
        f"https://localhost:{server.port}/v1",
        connect_timeout_seconds=4,
        first_byte_timeout_seconds=60,
    )
    provider = OpenAICompletionsProvider(
        settings, http=UpstreamHttp(settings, ssl_context=make_tls().client())
    )
    start = trio.current_time()
    try:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    finally:
        await provider.aclose()
    assert trio.current_time() - start == pytest.approx(4.0)
    assert (caught.value.kind, caught.value.message) == (
        "timeout",
        "Could not connect to provider 'fake' within 4 s",
    )


async def test_cancelled_during_the_handshake_leaves_no_socket(nursery: trio.Nursery) -> None:
    client_left = trio.Event()

    async def read_until_eof(stream: trio.abc.Stream) -> None:
        while await stream.receive_some(65536):  # the client's hello, then its EOF
            pass
        client_left.set()

    server = await start_raw_server(nursery, read_until_eof)
    pool = ConnectionPool(ssl_context=make_tls().client())
    before = open_fds()
    with trio.CancelScope() as scope:
        nursery.start_soon(cancel_when_connected, server.connected, scope)
        await exchange(pool, f"https://localhost:{server.port}/v1")
    assert scope.cancelled_caught
    with trio.fail_after(5):
        await client_left.wait()  # the server saw the connection close...
    await trio.testing.wait_all_tasks_blocked()  # ...and closed its own end
    assert open_fds() == before


async def cancel_when_connected(connected: trio.Event, scope: trio.CancelScope) -> None:
    await connected.wait()
    await trio.testing.wait_all_tasks_blocked()  # the client waits for the server's hello
    scope.cancel()


def test_the_default_context_trusts_certifis_bundle_and_verifies() -> None:
    context = default_ssl_context()
    # Mozilla's bundle (well over a hundred roots), whatever the system store holds.
    assert len(context.get_ca_certs()) > 100
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
