"""The client's address behind trusted proxies: ``gateway.client_address``. No sockets."""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.client_address import (
    CLIENT,
    client_address,
    proxy_network,
    resolve_scope,
    scope_client,
)

TRUSTED = (proxy_network("10.0.0.0/8"), proxy_network("127.0.0.1"), proxy_network("::1"))


def xff(*values: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", value.encode("latin-1")) for value in values]


def resolve(peer: str | None, headers: list[tuple[bytes, bytes]]) -> str | None:
    return client_address(peer, headers, TRUSTED)


def test_without_trusted_proxies_the_headers_are_ignored() -> None:
    headers = [*xff("203.0.113.7"), (b"x-real-ip", b"203.0.113.8")]
    assert client_address("127.0.0.1", headers, ()) == "127.0.0.1"
    assert client_address(None, headers, ()) is None


def test_an_untrusted_peer_is_the_client_whatever_it_says() -> None:
    headers = [*xff("127.0.0.1"), (b"x-real-ip", b"127.0.0.1")]
    assert resolve("203.0.113.9", headers) == "203.0.113.9"
    assert resolve("::ffff:203.0.113.9", headers) == "::ffff:203.0.113.9"  # the peer, as given
    assert resolve(None, headers) is None
    assert resolve("not-an-address", headers) == "not-an-address"


def test_a_trusted_peer_without_headers_is_the_client() -> None:
    assert resolve("127.0.0.1", []) == "127.0.0.1"
    assert resolve("10.1.2.3", [(b"user-agent", b"x")]) == "10.1.2.3"


@pytest.mark.parametrize(
    ("peer", "values", "client"),
    [
        ("127.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        # From the right: the first hop that is not a trusted proxy.
        ("127.0.0.1", ["198.51.100.1, 203.0.113.7, 10.0.0.2"], "203.0.113.7"),
        ("10.0.0.1", ["127.0.0.1, 203.0.113.7"], "203.0.113.7"),  # a spoofed hop on the left
        # Every hop trusted: the leftmost.
        ("127.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),
        # Several headers are one list, in order.
        ("127.0.0.1", ["198.51.100.1", "203.0.113.7, 10.0.0.2"], "203.0.113.7"),
        ("127.0.0.1", ["10.0.0.3", "10.0.0.2"], "10.0.0.3"),
        # Spaces, tabs and empty items.
        ("127.0.0.1", [" \t203.0.113.7 \t"], "203.0.113.7"),
        ("127.0.0.1", [",, 203.0.113.7 ,, 10.0.0.2,"], "203.0.113.7"),
        ("127.0.0.1", ["", "203.0.113.7", ""], "203.0.113.7"),
        # Ports.
        ("127.0.0.1", ["203.0.113.7:5678"], "203.0.113.7"),
        ("127.0.0.1", ["[2001:db8::7]:443"], "2001:db8::7"),
        ("127.0.0.1", ["[2001:db8::7]"], "2001:db8::7"),
        ("127.0.0.1", ["203.0.113.7, [::1]:80"], "203.0.113.7"),  # a trusted hop with a port
        # IPv6, in its normal form; IPv4-mapped addresses count as IPv4.
        ("::1", ["2001:DB8:0:0::7"], "2001:db8::7"),
        ("::1", ["::ffff:203.0.113.7"], "203.0.113.7"),
        ("::ffff:127.0.0.1", ["203.0.113.7"], "203.0.113.7"),  # a mapped peer is trusted
        ("127.0.0.1", ["203.0.113.7, ::ffff:10.0.0.2"], "203.0.113.7"),
        ("127.0.0.1", ["::1"], "::1"),  # every hop trusted
    ],
)
def test_x_forwarded_for(peer: str, values: list[str], client: str) -> None:
    assert resolve(peer, xff(*values)) == client


@pytest.mark.parametrize(
    "value",
    [
        "unknown",
        "_hidden",  # RFC 7239 obfuscated identifiers
        "_SEVKISEK",
        "203.0.113.7, unknown",  # the hop next to the proxy is unidentified
        "not an address",
        "203.0.113.7:",
        "203.0.113.7:port",
        "203.0.113.7:123456",
        "203.0.113.7:65536",
        "[2001:db8::7]:99999",
        "[203.0.113.7]:80",
        "[2001:db8::7",
        "[2001:db8::7]80",
        "[2001:db8::7]:",
        "2001:db8::7:80:80:80:80:80",
        '"203.0.113.7"',
        "203.0.113.7 198.51.100.1",
        "203.0.113.256",
        "010.0.0.1",
        "203.0.113.7/32",
        "host.example",
        "\xff\xfe",
        "\u0661\u0662\u0663.0.0.1",  # non-ASCII digits
    ],
)
def test_a_malformed_hop_falls_back_to_the_peer(value: str) -> None:
    headers = [(b"x-forwarded-for", value.encode("utf-8")), (b"x-real-ip", b"198.51.100.1")]
    assert resolve("127.0.0.1", headers) == "127.0.0.1"


def test_malformed_hops_beyond_the_client_do_not_matter() -> None:
    assert resolve("127.0.0.1", xff("garbage, unknown, 203.0.113.7")) == "203.0.113.7"


def test_x_real_ip_when_there_is_no_x_forwarded_for() -> None:
    assert resolve("127.0.0.1", [(b"x-real-ip", b" 203.0.113.7 ")]) == "203.0.113.7"
    assert resolve("127.0.0.1", [(b"X-Real-IP", b"[2001:db8::7]:80")]) == "2001:db8::7"
    assert resolve("127.0.0.1", [(b"x-real-ip", b"unknown")]) == "127.0.0.1"
    # Several X-Real-IP headers: nobody can say which one is the proxy's.
    twice = [(b"x-real-ip", b"203.0.113.7"), (b"x-real-ip", b"203.0.113.8")]
    assert resolve("127.0.0.1", twice) == "127.0.0.1"
    # X-Forwarded-For wins; one with only empty items counts as absent.
    both = [(b"x-real-ip", b"203.0.113.8"), *xff("203.0.113.7")]
    assert resolve("127.0.0.1", both) == "203.0.113.7"
    assert resolve("127.0.0.1", [*xff(" , "), (b"x-real-ip", b"203.0.113.8")]) == "203.0.113.8"


HOPS = st.one_of(
    st.ip_addresses().map(str),
    st.tuples(st.ip_addresses(v=4), st.integers(0, 99_999)).map(lambda p: f"{p[0]}:{p[1]}"),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 99_999)).map(lambda p: f"[{p[0]}]:{p[1]}"),
    st.sampled_from(["unknown", "_hidden", "", " ", "[", "]:", "::", "1.2.3.4:"]),
    st.text(max_size=12),
)
VALUES = st.one_of(
    st.lists(HOPS, max_size=5).map(lambda hops: ",".join(hops).encode("utf-8")),
    st.binary(max_size=40),
)


@given(
    peer=st.sampled_from(["127.0.0.1", "10.1.2.3", "::1", "203.0.113.9", "::ffff:10.0.0.1"]),
    forwarded=st.lists(VALUES, max_size=3),
    real=st.lists(VALUES, max_size=2),
)
def test_anything_sent_gives_the_peer_or_an_address(
    peer: str, forwarded: list[bytes], real: list[bytes]
) -> None:
    headers = [(b"x-forwarded-for", v) for v in forwarded] + [(b"x-real-ip", v) for v in real]
    client = resolve(peer, headers)
    assert client is not None
    assert client == peer or client == str(ipaddress.ip_address(client))


def normal(ip: IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    return ip.ipv4_mapped if isinstance(ip, IPv6Address) and ip.ipv4_mapped else ip


@given(
    junk=st.lists(VALUES, max_size=3),
    client=st.ip_addresses().filter(lambda ip: not any(normal(ip) in n for n in TRUSTED)),
)
def test_what_lies_left_of_the_client_cannot_change_it(
    junk: list[bytes], client: IPv4Address | IPv6Address
) -> None:
    # The proxies append the address they saw: a client controls only what is left of it.
    headers = [(b"x-forwarded-for", v) for v in junk]
    headers.append((b"x-forwarded-for", f"{client}, 10.0.0.2".encode()))
    assert resolve("127.0.0.1", headers) == str(normal(client))


def test_header_names_are_matched_case_insensitively() -> None:
    assert resolve("127.0.0.1", [(b"X-Forwarded-For", b"203.0.113.7")]) == "203.0.113.7"


def test_a_long_chain_of_trusted_hops() -> None:
    chain = ", ".join(f"10.0.{i // 250}.{i % 250 + 1}" for i in range(1000))
    assert resolve("127.0.0.1", xff(f"203.0.113.7, {chain}")) == "203.0.113.7"


@pytest.mark.parametrize(
    ("entry", "network"),
    [
        ("127.0.0.1", IPv4Network("127.0.0.1/32")),
        ("10.0.0.0/8", IPv4Network("10.0.0.0/8")),
        ("10.1.2.3/8", IPv4Network("10.0.0.0/8")),  # host bits dropped
        (" 192.168.0.0/16 ", IPv4Network("192.168.0.0/16")),
        ("::1", IPv6Network("::1/128")),
        ("2001:db8::/32", IPv6Network("2001:db8::/32")),
        ("::ffff:10.0.0.0/104", IPv4Network("10.0.0.0/8")),
        ("::ffff:127.0.0.1", IPv4Network("127.0.0.1/32")),
        ("::ffff:0:0/64", IPv6Network("::/64")),  # wider than the mapped range: stays IPv6
    ],
)
def test_proxy_network(entry: str, network: IPv4Network | IPv6Network) -> None:
    assert proxy_network(entry) == network


@pytest.mark.parametrize("entry", ["", "localhost", "10.0.0.0/33", "1.2.3", "10.0.0.0/8/8", "*"])
def test_proxy_network_refuses_what_is_not_an_address(entry: str) -> None:
    with pytest.raises(ValueError):
        proxy_network(entry)


def test_a_mapped_proxy_entry_matches_both_spellings_of_the_peer() -> None:
    trusted = (proxy_network("::ffff:10.0.0.0/104"),)
    headers = xff("203.0.113.7")
    assert client_address("10.0.0.1", headers, trusted) == "203.0.113.7"
    assert client_address("::ffff:10.0.0.1", headers, trusted) == "203.0.113.7"


def test_the_scope_carries_the_resolved_client() -> None:
    scope: dict[str, object] = {"client": ("127.0.0.1", 5000), "headers": xff("203.0.113.7")}
    assert scope_client(scope) == "127.0.0.1"  # not resolved: the peer
    resolve_scope(scope, TRUSTED)
    assert scope[CLIENT] == "203.0.113.7"
    assert scope_client(scope) == "203.0.113.7"
    no_peer: dict[str, object] = {"client": None, "headers": xff("203.0.113.7")}
    resolve_scope(no_peer, TRUSTED)
    assert scope_client(no_peer) is None
    assert scope_client({}) is None
