"""Where a request goes, straight to its origin or through a proxy from the environment, and the
request head that goes with it. Pure.

Proxies are read as httpx's ``trust_env`` reads them: ``HTTPS_PROXY`` / ``HTTP_PROXY`` /
``ALL_PROXY`` and ``NO_PROXY``, in either case (``urllib.request.getproxies_environment`` gives
the mapping, ``proxy_bypass_environment`` applies ``NO_PROXY``: host names, domain suffixes,
``host:port``, or ``*`` for everything):

- an ``https://`` target goes through a CONNECT tunnel opened on the proxy, TLS to the target
  runs inside it;
- an ``http://`` target is asked of the proxy in absolute form (``POST http://host/path``);
- credentials in the proxy URL (``http://user:pass@proxy:3128``) become a basic
  ``Proxy-Authorization`` header, on the CONNECT request or on each forwarded request.

A proxy URL without a scheme is taken as ``http://``; an ``https://`` proxy is spoken to over
TLS. Other proxy schemes (``socks5://``) are an ``InvalidRequest``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

# Missing from typeshed's stub of urllib.request, but there since Python 3.0.
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

import h11

from gateway.providers.http11.wire import (
    DEFAULT_PORTS,
    InvalidRequest,
    Origin,
    parse_url,
    request_fields,
    request_head,
)

__all__ = [
    "PreparedRequest",
    "Proxy",
    "RequestTemplate",
    "Route",
    "connect_request",
    "proxy_for",
    "request_template",
]


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy and the ``Proxy-Authorization`` value its URL's credentials make, if any."""

    origin: Origin
    authorization: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Route:
    """What a connection is opened to: ``origin``, through ``proxy`` if any. Requests with the
    same route share pooled connections."""

    origin: Origin
    proxy: Proxy | None = None

    @property
    def tunnel(self) -> bool:
        """Whether the connection is a CONNECT tunnel through the proxy (``https://`` targets)."""
        return self.proxy is not None and self.origin.scheme == "https"


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request ready to be written on any connection of its ``route``: its head and body."""

    route: Route
    head: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """Everything about a request but its body, worked out and checked once: its route and its
    head up to the ``Content-Length`` value (see ``wire.request_head``)."""

    route: Route
    head: bytes = field(repr=False)  # may carry credentials

    def prepare(self, body: bytes) -> PreparedRequest:
        """The request with ``body``: only its ``Content-Length`` is worked out here."""
        return PreparedRequest(self.route, self.head + b"%d\r\n\r\n" % len(body), body)


def parse_proxy(url: str) -> Proxy:
    """The ``Proxy`` of a proxy URL. Raises ``InvalidRequest`` (the message never repeats the
    URL's credentials)."""
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"invalid proxy URL from the environment: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidRequest(
            f"unsupported proxy scheme {scheme!r} from the environment: "
            "only http:// and https:// proxies are supported"
        )
    if not parts.hostname:
        raise InvalidRequest("invalid proxy URL from the environment: no host")
    authorization = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    origin = Origin(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])
    return Proxy(origin, authorization)


def proxy_for(origin: Origin, proxies: Mapping[str, str]) -> Proxy | None:
    """The proxy to reach ``origin`` through, or ``None`` to connect directly.

    ``proxies`` is ``urllib.request.getproxies_environment()``'s mapping: a scheme or ``all``
    to a proxy URL, ``no`` to the ``NO_PROXY`` list. Raises ``InvalidRequest`` for a proxy URL
    this client cannot use.
    """
    url = proxies.get(origin.scheme) or proxies.get("all")
    if not url or proxy_bypass_environment(origin.authority, dict(proxies)):
        return None
    return parse_proxy(url)


def request_template(
    method: str,
    url: str,
    headers: Sequence[Mapping[str, str]],
    proxies: Mapping[str, str],
) -> RequestTemplate:
    """The template of requests to ``url`` with ``headers`` (merged as ``request_fields`` merges
    them; through an HTTP proxy, the proxy's ``Proxy-Authorization`` comes last).

    ``method`` is one whose response has a body framed as usual (not ``HEAD`` or ``CONNECT``).
    Raises ``InvalidRequest`` for a URL, header or proxy setting that cannot be used.
    """
    if method in ("HEAD", "CONNECT"):
        raise InvalidRequest(f"unsupported method {method}")
    target = parse_url(url)
    proxy = proxy_for(target.origin, proxies)
    route = Route(target.origin, proxy)
    host = target.origin.host_header
    if proxy is None or route.tunnel:
        head = request_head(method, target.path, request_fields(host, headers))
    else:
        groups = list(headers)
        if proxy.authorization is not None:
            groups.append({"Proxy-Authorization": proxy.authorization})
        head = request_head(method, target.absolute, request_fields(host, groups))
    return RequestTemplate(route, head)


def connect_request(route: Route) -> h11.Request:
    """The CONNECT request that opens a tunnel to ``route.origin`` through its proxy."""
    assert route.proxy is not None
    authority = route.origin.authority
    headers = [("Host", authority)]
    if route.proxy.authorization is not None:
        headers.append(("Proxy-Authorization", route.proxy.authorization))
    return h11.Request(method="CONNECT", target=authority, headers=headers)
