"""Proxy selection from the environment and the request heads that go with it, without sockets."""

from __future__ import annotations

import base64
from urllib.request import getproxies_environment

import h11
import pytest

from gateway.providers.http11.routing import (
    Proxy,
    Route,
    connect_request,
    parse_proxy,
    proxy_for,
    request_template,
)
from gateway.providers.http11.wire import InvalidRequest, Origin
from tests.providers.http11.support import parse_head

HTTPS = Origin("https", "api.example", 443)
HTTP = Origin("http", "gpu-box", 8000)
PROXY = Origin("http", "proxy.local", 3128)


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def test_no_proxy_configured() -> None:
    assert proxy_for(HTTPS, {}) is None
    assert proxy_for(HTTPS, {"http": "http://proxy.local:3128"}) is None


def test_the_targets_scheme_picks_the_proxy_then_all() -> None:
    proxies = {"https": "http://proxy.local:3128", "all": "http://other:1"}
    assert proxy_for(HTTPS, proxies) == Proxy(PROXY)
    assert proxy_for(HTTP, proxies) == Proxy(Origin("http", "other", 1))


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("proxy.local:3128", PROXY),
        ("http://proxy.local", Origin("http", "proxy.local", 80)),
        ("https://secure.proxy", Origin("https", "secure.proxy", 443)),
        ("HTTP://[::1]:3128/", Origin("http", "::1", 3128)),
    ],
)
def test_proxy_urls(url: str, origin: Origin) -> None:
    assert parse_proxy(url) == Proxy(origin)


def test_credentials_become_basic_authorization_and_stay_out_of_repr() -> None:
    proxy = parse_proxy("http://us%40er:p%3Ass@proxy.local:3128")
    assert proxy.authorization == basic("us@er:p:ss")
    assert "p:ss" not in repr(proxy) and "Basic" not in repr(proxy)
    assert parse_proxy("http://user@proxy.local:3128").authorization == basic("user:")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("socks5://user:secret@proxy.local:1080", "unsupported proxy scheme 'socks5'"),
        ("http://user:secret@proxy.local:notaport", "invalid proxy URL"),
        ("http://user:secret@:3128", "no host"),
    ],
)
def test_unusable_proxies_never_echo_credentials(url: str, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason) as caught:
        parse_proxy(url)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("no_proxy", "bypassed"),
    [
        ("*", True),
        ("api.example", True),
        ("example", True),  # a domain suffix
        (".example", True),
        ("other.example, api.example ", True),
        ("api.example:443", True),
        ("api.example:8443", False),
        ("pi.example", False),  # not a whole label
        ("", False),
    ],
)
def test_no_proxy(no_proxy: str, bypassed: bool) -> None:
    proxies = {"https": "http://proxy.local:3128", "no": no_proxy}
    assert (proxy_for(HTTPS, proxies) is None) is bypassed


def test_environment_variables_in_either_case(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.local:3128")
    monkeypatch.setenv("all_proxy", "http://other:1")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    proxies = getproxies_environment()
    assert proxy_for(HTTPS, proxies) == Proxy(PROXY)
    assert proxy_for(HTTP, proxies) == Proxy(Origin("http", "other", 1))
    assert proxy_for(Origin("https", "llm.internal.example", 443), proxies) is None


def head_of(request: h11.Request | bytes) -> dict[str, str]:
    if isinstance(request, bytes):
        request = parse_head(request)
    return {name.decode(): value.decode() for name, value in request.headers}


def test_direct_request_in_origin_form() -> None:
    prepared = request_template("POST", "https://api.example/v1/x?y=1", [{"A": "b"}], {}).prepare(
        b"{}"
    )
    assert prepared.route == Route(HTTPS)
    assert not prepared.route.tunnel
    assert parse_head(prepared.head).target == b"/v1/x?y=1"
    assert head_of(prepared.head)["host"] == "api.example"
    assert prepared.body == b"{}"


def test_http_target_through_a_proxy_in_absolute_form() -> None:
    proxies = {"http": "http://u:p@proxy.local:3128"}
    prepared = request_template("POST", "http://gpu-box:8000/v1/x", [{}], proxies).prepare(b"{}")
    assert prepared.route == Route(HTTP, Proxy(PROXY, basic("u:p")))
    assert not prepared.route.tunnel
    assert parse_head(prepared.head).target == b"http://gpu-box:8000/v1/x"
    headers = head_of(prepared.head)
    assert headers["host"] == "gpu-box:8000"
    assert headers["proxy-authorization"] == basic("u:p")


def test_https_target_through_a_tunnel() -> None:
    proxies = {"https": "http://u:p@proxy.local:3128"}
    prepared = request_template("POST", "https://api.example/v1/x", [{}], proxies).prepare(b"{}")
    assert prepared.route.tunnel
    assert parse_head(prepared.head).target == b"/v1/x"
    assert "proxy-authorization" not in head_of(prepared.head)  # only on the CONNECT
    connect = connect_request(prepared.route)
    assert (connect.method, connect.target) == (b"CONNECT", b"api.example:443")
    assert head_of(connect) == {
        "host": "api.example:443",
        "proxy-authorization": basic("u:p"),
    }


def test_connect_without_credentials() -> None:
    connect = connect_request(Route(Origin("https", "::1", 8443), Proxy(PROXY)))
    assert connect.target == b"[::1]:8443"
    assert head_of(connect) == {"host": "[::1]:8443"}


def test_a_template_is_checked_once_and_sizes_each_body() -> None:
    template = request_template("POST", "http://gpu-box:8000/v1/x", [{"A": "b"}], {})
    small, large = template.prepare(b"{}"), template.prepare(b"x" * 1000)
    assert small.route == large.route == Route(HTTP)
    assert head_of(small.head)["content-length"] == "2"
    assert head_of(large.head)["content-length"] == "1000"
    assert large.body == b"x" * 1000
    with pytest.raises(InvalidRequest, match="invalid request header"):
        request_template("POST", "http://gpu-box:8000/v1/x", [{"A": "b\r\nc: d"}], {})
    with pytest.raises(InvalidRequest, match="invalid URL"):
        request_template("POST", "gpu-box/v1/x", [{}], {})


@pytest.mark.parametrize("method", ["HEAD", "CONNECT"])
def test_methods_whose_responses_are_not_framed_as_usual(method: str) -> None:
    with pytest.raises(InvalidRequest, match="unsupported method"):
        request_template(method, "http://gpu-box:8000/v1/x", [{}], {})
