"""The HTTP/1.1 client's wire format: URLs, request heads, response heads, and its errors. Pure.

Every error the client raises is an ``HttpError``::

    HttpError
    ├── InvalidRequest     the request cannot be sent as given (URL, header or proxy setting)
    ├── ConnectError       no connection: DNS, TCP, TLS (the certificate included) or the proxy
    ├── ConnectionBroken   the upstream closed or reset the connection; ``answered`` tells whether
    │                      any byte of the response had arrived
    └── InvalidResponse    what arrived is not HTTP/1.1, or a body that cannot be decoded
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import quote, urlsplit

import h11

__all__ = [
    "DEFAULT_PORTS",
    "ConnectError",
    "ConnectionBroken",
    "HttpError",
    "InvalidRequest",
    "InvalidResponse",
    "Origin",
    "ResponseHead",
    "Target",
    "parse_url",
    "request_fields",
    "request_head",
    "response_head",
]

DEFAULT_PORTS: Mapping[str, int] = MappingProxyType({"http": 80, "https": 443})
# Framing and connection management are the client's: a caller's value would contradict them.
_OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
# What may stay unescaped in a request target (RFC 3986 reserved and unreserved characters, and
# '%' so that existing escapes are kept).
_TARGET_SAFE = "!$&'()*+,/:;=?@~%"


class HttpError(Exception):
    """Any failure of the HTTP/1.1 client."""


class InvalidRequest(HttpError):
    """The request cannot be sent as given."""


class ConnectError(HttpError):
    """No connection could be opened (DNS, TCP, TLS or the proxy failed)."""


class ConnectionBroken(HttpError):
    """The upstream closed or reset the connection before the exchange ended."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered  # some byte of the response had arrived


class InvalidResponse(HttpError):
    """The upstream sent something that is not valid HTTP/1.1, or an undecodable body."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a connection goes: scheme, host (IPv6 without brackets) and port."""

    scheme: str  # "http" or "https"
    host: str
    port: int

    @property
    def authority(self) -> str:
        """``host:port``, as a CONNECT request names its target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the authority without a default port."""
        if DEFAULT_PORTS[self.scheme] == self.port:
            return f"[{self.host}]" if ":" in self.host else self.host
        return self.authority


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed request URL: its origin and its path with the query (origin-form)."""

    origin: Origin
    path: str

    @property
    def absolute(self) -> str:
        """The absolute-form request target, for a request through an HTTP proxy."""
        return f"{self.origin.scheme}://{self.origin.host_header}{self.path}"


def parse_url(url: str) -> Target:
    """The ``Target`` of an ``http://`` or ``https://`` URL. Raises ``InvalidRequest``.

    Non-ASCII host names are IDNA-encoded; characters a request target cannot carry are
    percent-encoded (existing escapes are kept); the fragment is dropped.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise InvalidRequest(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidRequest(f"invalid URL {url!r}: the scheme must be http or https")
    if not host:
        raise InvalidRequest(f"invalid URL {url!r}: no host")
    path = quote(parts.path or "/", safe=_TARGET_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_TARGET_SAFE)
    return Target(Origin(scheme, host, port or DEFAULT_PORTS[scheme]), path)


def request_fields(host: str, headers: Iterable[Mapping[str, str]]) -> tuple[tuple[str, str], ...]:
    """The header fields of a request, all but ``Content-Length`` (see ``request_head``).

    They start with ``Host`` and ``Accept-Encoding: identity``; ``headers`` are merged over
    them in order, names compared without case, a later value replacing an earlier one.
    ``Content-Length``, ``Transfer-Encoding``, ``Connection`` and ``Keep-Alive`` are the
    client's own: a caller's are dropped. Nothing is checked here (``request_head`` does).
    """
    merged: dict[str, tuple[str, str]] = {
        "host": ("Host", host),
        "accept-encoding": ("Accept-Encoding", "identity"),
    }
    for group in headers:
        for name, value in group.items():
            key = name.lower()
            if key not in _OWN_HEADERS:
                merged[key] = (name, value)
    return tuple(merged.values())


def request_head(method: str, target: str, fields: Iterable[tuple[str, str]]) -> bytes:
    """The head of a request with ``fields`` (see ``request_fields``) up to the value of its
    ``Content-Length``, which comes last: ``head + b"%d\\r\\n\\r\\n" % len(body)`` completes it.

    Checked by h11's rules: raises ``InvalidRequest`` for a header that cannot be sent (a line
    break in a value, ...).
    """
    try:
        request = h11.Request(method=method, target=target, headers=list(fields))
    except h11.LocalProtocolError as exc:
        raise InvalidRequest(f"invalid request header: {exc}") from None
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method, request.target)]
    lines += [b"%s: %s\r\n" % field for field in request.headers.raw_items()]
    lines.append(b"Content-Length: ")
    return b"".join(lines)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """A response's status and headers (lower-case names; repeated headers joined by ``, ``)."""

    status: int
    headers: Mapping[str, str]

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def response_head(status: int, fields: Iterable[tuple[bytes, bytes]]) -> ResponseHead:
    """The ``ResponseHead`` of a status and the raw header fields that came with it."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in fields:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return ResponseHead(status, headers)
