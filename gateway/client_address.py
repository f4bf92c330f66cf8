"""The client's address: the TCP peer, or the client a trusted proxy forwards for.

``gateway.trustedProxies`` lists the proxies and load balancers in front of the gateway
(addresses or CIDR networks, parsed once by ``proxy_network``). Only a request whose TCP peer
is one of them has its client taken from the forwarding headers; from any other peer those
headers are ignored, so a client cannot choose its own address:

- ``X-Forwarded-For``: every such header, joined in order into one list (RFC 9110 §5.3). Each
  proxy appends the address it saw, so the list is read from the right: the first hop that is
  not itself a trusted proxy is the client; when every hop is trusted, the leftmost one.
- Else ``X-Real-IP`` (a single value; several of them are ignored).

A hop that is not an address (``unknown``, an RFC 7239 obfuscated identifier such as
``_hidden``, anything malformed) ends the walk: what lies left of it was written by a party
nobody vouches for, so the client is then the peer. Empty list items are skipped (RFC 9110
§5.6.1). Values may carry a port (``1.2.3.4:5678``, ``[::1]:80``). IPv4-mapped IPv6 addresses
count as IPv4, and a forwarded address is given in its one normal form, so that one client
has one rate-limit bucket however its address was spelled.

``GatewayASGI`` resolves each request's client once, when proxies are configured
(``resolve_scope``); every consumer (the auth guard and its rate limit, the WebSocket
handshake, the access log) reads it with ``scope_client``. No I/O, and nothing a client sends
makes anything here raise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, MutableMapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

Address = IPv4Address | IPv6Address
ProxyNetwork = IPv4Network | IPv6Network
Headers = Iterable[tuple[bytes, bytes]]

# The scope key under which ``resolve_scope`` stores the client's address.
CLIENT = "gateway.client"

_OWS = b" \t"


def proxy_network(entry: str) -> ProxyNetwork:
    """``entry`` (``"10.0.0.0/8"``, ``"127.0.0.1"``, ``"::1"``, ...) as a network; host bits
    of a CIDR are dropped, IPv4-mapped IPv6 networks become IPv4 ones. ``ValueError`` when it
    is neither an address nor a network."""
    network = ipaddress.ip_network(entry.strip(), strict=False)
    if isinstance(network, IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return IPv4Network((mapped, network.prefixlen - 96))
    return network


def client_address(
    peer: str | None, headers: Headers, trusted: tuple[ProxyNetwork, ...]
) -> str | None:
    """The address of the client behind the TCP ``peer`` (see the module docstring):
    ``peer`` itself unless it is in ``trusted`` and the forwarding headers name a client."""
    if not trusted or peer is None:
        return peer
    peer_ip = _address(peer)
    if peer_ip is None or not _within(peer_ip, trusted):
        return peer
    forwarded: list[bytes] = []
    real_ip: list[bytes] = []
    for name, value in headers:
        name = name.lower()
        if name == b"x-forwarded-for":
            forwarded.append(value)
        elif name == b"x-real-ip":
            real_ip.append(value)
    hops = [hop for hop in (item.strip(_OWS) for item in b",".join(forwarded).split(b",")) if hop]
    if hops:
        for hop in reversed(hops):
            ip = _hop_address(hop)
            if ip is None:
                return peer
            if not _within(ip, trusted):
                return str(ip)
        return str(ip)  # every hop is a trusted proxy: the leftmost
    if len(real_ip) == 1:
        real = _hop_address(real_ip[0].strip(_OWS))
        if real is not None:
            return str(real)
    return peer


def resolve_scope(scope: MutableMapping[str, Any], trusted: tuple[ProxyNetwork, ...]) -> None:
    """Store the client's address of this HTTP or WebSocket request in its ASGI ``scope``."""
    peer = scope.get("client")
    scope[CLIENT] = client_address(peer[0] if peer else None, scope.get("headers", ()), trusted)


def scope_client(scope: Mapping[str, Any]) -> str | None:
    """The client's address of a request: as ``resolve_scope`` stored it, else the TCP peer
    (no proxies configured)."""
    resolved: str | None = scope.get(CLIENT)
    if resolved is not None:
        return resolved
    peer = scope.get("client")
    return peer[0] if peer else None


def _within(ip: Address, trusted: tuple[ProxyNetwork, ...]) -> bool:
    return any(ip in network for network in trusted)


def _address(text: str) -> Address | None:
    """``text`` as an address (IPv4-mapped IPv6 as IPv4), or ``None``."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _hop_address(hop: bytes) -> Address | None:
    """One forwarded hop (an address, maybe with a port) as an address, or ``None``."""
    if not hop.isascii():
        return None
    text = hop.decode("ascii")
    if text.startswith("["):
        # ``[v6]`` or ``[v6]:port``
        host, closed, rest = text[1:].partition("]")
        if not closed or ":" not in host or (rest and not (rest[0] == ":" and _is_port(rest[1:]))):
            return None
        return _address(host)
    host, colon, port = text.partition(":")
    if colon and ":" not in port:
        # ``a.b.c.d:port`` (a bare IPv6 address has at least two colons)
        return _address(host) if _is_port(port) else None
    return _address(text)


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isdigit() and int(text) <= 65535
