"""Proxies from the environment, through the real provider and client: a CONNECT proxy for
``https://`` targets (with TLS to the target inside the tunnel), a plain HTTP proxy for
``http://`` targets, credentials, ``NO_PROXY``, refusals and stalls. Both proxies are written
here on trio sockets on loopback."""

from __future__ import annotations

import base64

import pytest
import trio
import trio.testing

from gateway.providers.base import ProviderError
from gateway.providers.openai_completions import OpenAICompletionsProvider
from gateway.providers.upstream_http import UpstreamHttp
from gateway.testing import FakeUpstream, Script
from tests.providers.http11.support import (
    ProxyLog,
    connect_proxy,
    forward_proxy,
    make_tls,
    relay_to,
    start_raw_server,
)
from tests.providers.support import collect, open_provider, settings_for, text_of

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
BODY_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture(autouse=True)
def clean_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


async def test_https_through_a_connect_tunnel(
    nursery: trio.Nursery, up: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = make_tls()
    target = await start_raw_server(nursery, relay_to(up.port, tls), tls=tls.server)
    log = ProxyLog()
    proxy = await start_raw_server(nursery, connect_proxy(log))
    monkeypatch.setenv("HTTPS_PROXY", f"http://us%3Aer:s3cret@127.0.0.1:{proxy.port}")
    up.enqueue(Script(text="through the tunnel"), Script(text="and again"))
    settings = settings_for(f"https://localhost:{target.port}/v1")
    http = UpstreamHttp(settings, ssl_context=tls.client())
    provider = OpenAICompletionsProvider(settings, http=http)
    try:
        assert text_of(await collect(provider)) == "through the tunnel"
        assert text_of(await collect(provider)) == "and again"
    finally:
        await provider.aclose()
    assert log.targets == [f"CONNECT localhost:{target.port}"]  # one tunnel, kept alive
    assert log.authorizations == [basic("us:er:s3cret")]
    assert tls.sni == ["localhost"]  # TLS to the target, inside the tunnel
    assert up.requests[0].path == "/v1/chat/completions"  # origin-form inside the tunnel
    assert "proxy-authorization" not in up.requests[0].headers
    assert [record.connection for record in up.requests] == [1, 1]


async def test_http_through_a_forwarding_proxy(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ProxyLog()
    proxy = await start_raw_server(nursery, forward_proxy(log))
    monkeypatch.setenv("http_proxy", f"127.0.0.1:{proxy.port}")  # no scheme: http://
    monkeypatch.setenv("ALL_PROXY", "http://unused.invalid:1")
    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@unused.invalid:1")
    http = UpstreamHttp(settings_for("http://llm.internal:8000/v1"))
    url = "http://llm.internal:8000/v1/chat/completions"
    try:
        for _ in range(2):
            async with http.open_stream(url, body=b"{}", headers=BODY_HEADERS) as upstream:
                assert await upstream.read_all(1000) == b"data: hi\n\n"
    finally:
        await http.aclose()
    assert log.targets == [f"POST {url}"] * 2
    assert log.authorizations == [None, None]
    assert proxy.accepted == 1  # kept alive


async def test_forwarding_proxy_credentials(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ProxyLog()
    proxy = await start_raw_server(nursery, forward_proxy(log))
    monkeypatch.setenv("ALL_PROXY", f"http://me:p%40ss@127.0.0.1:{proxy.port}")
    http = UpstreamHttp(settings_for("http://llm.internal/v1"))
    url = "http://llm.internal/v1/chat/completions"
    try:
        async with http.open_stream(url, body=b"{}", headers=BODY_HEADERS) as upstream:
            await upstream.read_all(1000)
    finally:
        await http.aclose()
    assert log.targets == [f"POST {url}"]
    assert log.authorizations == [basic("me:p@ss")]


async def test_no_proxy_goes_direct(up: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
    up.enqueue(Script(text="direct"))
    async with open_provider(settings_for(up.base_url)) as provider:
        assert text_of(await collect(provider)) == "direct"


async def test_proxy_refusing_the_tunnel(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = ProxyLog()
    proxy = await start_raw_server(nursery, connect_proxy(log, refuse=407))
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
    async with open_provider(settings_for("https://api.example/v1")) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert (caught.value.kind, caught.value.status) == ("connect", 502)
    assert caught.value.message == (
        f"Could not connect to provider 'fake': proxy 127.0.0.1:{proxy.port} refused the "
        "tunnel to api.example:443 (HTTP 407)"
    )
    assert log.targets == ["CONNECT api.example:443"]


async def test_unreachable_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: refused
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        async with open_provider(settings_for("https://api.example/v1")) as provider:
            with pytest.raises(ProviderError) as caught:
                await collect(provider)
    assert caught.value.kind == "connect"
    assert f"127.0.0.1:{port}" in caught.value.message


async def test_unsupported_proxy_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "socks5://user:secret@127.0.0.1:1080")
    async with open_provider(settings_for("https://api.example/v1")) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == "connect"
    assert "unsupported proxy scheme 'socks5'" in caught.value.message
    assert "secret" not in caught.value.message


async def test_a_proxy_that_never_answers_connect_is_a_connect_timeout(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async def silent(stream: trio.abc.Stream) -> None:
        await trio.sleep_forever()

    proxy = await start_raw_server(nursery, silent)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    settings = settings_for("https://api.example/v1", connect_timeout_seconds=3)
    async with open_provider(settings) as provider:
        start = trio.current_time()
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert trio.current_time() - start == pytest.approx(3.0)
    assert caught.value.message == "Could not connect to provider 'fake' within 3 s"


async def test_an_https_proxy_is_spoken_to_over_tls(
    nursery: trio.Nursery, up: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS to the proxy itself: plain forwarding for an http:// target, and TLS inside TLS for
    an https:// target through the tunnel."""
    tls = make_tls()
    target = await start_raw_server(nursery, relay_to(up.port), tls=tls.server)
    tunnel_log, forward_log = ProxyLog(), ProxyLog()
    tunnel = await start_raw_server(nursery, connect_proxy(tunnel_log), tls=tls.server)
    forward = await start_raw_server(nursery, forward_proxy(forward_log), tls=tls.server)
    monkeypatch.setenv("HTTPS_PROXY", f"https://localhost:{tunnel.port}")
    monkeypatch.setenv("HTTP_PROXY", f"https://localhost:{forward.port}")
    up.enqueue(Script(text="tls in tls"))
    settings = settings_for(f"https://localhost:{target.port}/v1")
    provider = OpenAICompletionsProvider(
        settings, http=UpstreamHttp(settings, ssl_context=tls.client())
    )
    try:
        assert text_of(await collect(provider)) == "tls in tls"
    finally:
        await provider.aclose()
    assert tunnel_log.targets == [f"CONNECT localhost:{target.port}"]
    http = UpstreamHttp(settings_for("http://llm.internal/v1"), ssl_context=tls.client())
    url = "http://llm.internal/v1/chat/completions"
    try:
        async with http.open_stream(url, body=b"{}", headers=BODY_HEADERS) as upstream:
            assert await upstream.read_all(1000) == b"data: hi\n\n"
    finally:
        await http.aclose()
    assert forward_log.targets == [f"POST {url}"]
    assert tls.sni == ["localhost"] * 3  # the tunnel proxy, the target inside, the forward proxy
