"""The gateway's errors and their OpenAI-shaped bodies.

Exception tree::

    GatewayError            an error with an HTTP status and an OpenAI error body
    ├── InvalidRequest      400 invalid_request_error (bad body, bad field, unknown agent)
    └── ProviderError       a model provider failed (see ``gateway.providers.base``)

Anything else that escapes a handler is a bug: it is logged and answered with a generic 500.
"""

from __future__ import annotations

from gateway.text import clean
from gateway.types import ErrorBody


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> ErrorBody:
    """The OpenAI error document ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class CannotStart(RuntimeError):
    """The gateway must not serve (a newer database schema, a state directory served by another
    process alone): its message says why, and the startup fails with it."""


class GatewayError(Exception):
    """An error the client should see, with its HTTP status and OpenAI error fields."""

    status: int = 500
    type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type_: str | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        # The message (and code) may quote an upstream, whose JSON can carry unpaired
        # surrogates: cleaned here, every response, event and transcript can encode them.
        message = clean(message)
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type_ is not None:
            self.type = type_
        self.param = param
        self.code = clean(code) if code is not None else None
        self.retry_after = retry_after

    def body(self) -> ErrorBody:
        return error_body(self.message, self.type, param=self.param, code=self.code)

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class InvalidRequest(GatewayError):
    """The request is malformed or names something that does not exist (400)."""

    status = 400
    type = "invalid_request_error"
