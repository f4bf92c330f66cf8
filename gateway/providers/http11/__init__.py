"""A small HTTP/1.1 client on trio sockets, for the gateway's upstream model APIs.

Layers, each in its own module:

- ``wire`` (pure): URLs, request heads (checked by h11's rules), response heads, and the
  client's exception tree;
- ``response`` (pure): responses parsed by llhttp (``httptools``) and this client's rules;
- ``decoding`` (pure): ``Content-Encoding`` (gzip, deflate) of response bodies;
- ``routing`` (pure): proxies from the environment, and the route and head of a request;
- ``connection``: one connection, one exchange at a time, closed at once when abandoned;
- ``pool``: opening connections (TCP, proxy tunnel over h11, TLS) and keeping idle ones.

Deadlines are not the client's: its caller runs each step inside its own cancel scopes
(``gateway.providers.upstream_http``).
"""

from gateway.providers.http11.connection import Connection
from gateway.providers.http11.pool import ConnectionPool, default_ssl_context
from gateway.providers.http11.routing import (
    PreparedRequest,
    RequestTemplate,
    Route,
    request_template,
)
from gateway.providers.http11.wire import (
    ConnectError,
    ConnectionBroken,
    HttpError,
    InvalidRequest,
    InvalidResponse,
    ResponseHead,
)

__all__ = [
    "ConnectError",
    "Connection",
    "ConnectionBroken",
    "ConnectionPool",
    "HttpError",
    "InvalidRequest",
    "InvalidResponse",
    "PreparedRequest",
    "RequestTemplate",
    "ResponseHead",
    "Route",
    "default_ssl_context",
    "request_template",
]
