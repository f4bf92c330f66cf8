"""The seam between an agent run and a model API.

A provider turns one ``ModelRequest`` into a stream of ``ProviderEvent``s by calling ``emit`` for
each, in order, and returns when the model has finished. It raises ``ProviderError`` for every
failure it can classify. Cancellation is the only way a run stops a provider early: when the
surrounding cancel scope is cancelled, the provider must close its upstream connection before the
cancellation propagates (an ``async with`` around the upstream response does exactly that).

Providers whose API has embeddings also implement ``EmbeddingProvider`` (``embed``, returning an
``EmbeddingResult``); ``supports_embeddings`` tells a caller whether one does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeGuard

from gateway.errors import GatewayError
from gateway.providers.events import ProviderEvent
from gateway.types import ChatMessage

Emit = Callable[[ProviderEvent], Awaitable[None]]

ErrorKind = Literal[
    "bad_request",  # the upstream rejected the request (400/404/422): the client's fault
    "auth",  # the upstream rejected our credentials (401/403)
    "rate_limited",  # 429
    "upstream",  # 5xx or an unusable answer
    "connect",  # could not connect
    "timeout",  # connect, first byte or idle timeout
    "protocol",  # the upstream spoke something we could not parse
]

_STATUS: dict[ErrorKind, int] = {
    "bad_request": 400,
    "auth": 502,
    "rate_limited": 429,
    "upstream": 502,
    "connect": 502,
    "timeout": 504,
    "protocol": 502,
}

_TYPE: dict[ErrorKind, str] = {
    "bad_request": "invalid_request_error",
    "auth": "upstream_error",
    "rate_limited": "rate_limit_error",
    "upstream": "upstream_error",
    "connect": "upstream_error",
    "timeout": "timeout_error",
    "protocol": "upstream_error",
}


class ProviderError(GatewayError):
    """A model provider failed. ``kind`` decides the HTTP status and whether to fall back."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        provider: str = "",
        retry_after: float | None = None,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(
            message,
            status=_STATUS[kind],
            type_=_TYPE[kind],
            code=kind,
            retry_after=retry_after,
        )
        self.kind: ErrorKind = kind
        self.provider = provider
        self.upstream_status = upstream_status

    @property
    def retryable(self) -> bool:
        """Whether another model may succeed where this one failed (fallbacks)."""
        return self.kind != "bad_request"


def protocol_error(provider: str, what: str) -> ProviderError:
    """A provider that broke its API's protocol: ``Provider '<id>' <what>``."""
    return ProviderError("protocol", f"Provider '{provider}' {what}", provider=provider)


def token_count(value: object) -> int:
    """A token count from a provider's JSON: an integer (not a boolean), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What a provider is asked to complete.

    ``messages`` holds the conversation without system/developer messages; ``system`` is the
    whole system prompt (agent prompt plus the client's system messages). ``params`` holds the
    validated OpenAI sampling/tool fields to forward, under the client's names (read the output
    limit with ``max_output_tokens``).
    """

    model: str
    messages: Sequence[ChatMessage]
    system: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


def max_output_tokens(params: Mapping[str, Any]) -> int | None:
    """The output token limit of a request, whichever OpenAI name the client used."""
    value = params.get("max_completion_tokens", params.get("max_tokens"))
    return value if isinstance(value, int) else None


class Provider(Protocol):
    """A model API. Implementations share one connection pool per provider."""

    @property
    def id(self) -> str: ...

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        """Complete ``request``, calling ``emit`` for each event in order.

        Raises ``ProviderError``. On cancellation the upstream connection is closed (not returned
        to a pool) before this returns.
        """
        ...

    async def aclose(self) -> None:
        """Release pooled connections. Called once when the app shuts down."""
        ...


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """An upstream's embeddings answer, as it gave it.

    ``data``: the OpenAI ``data`` list (``{"object": "embedding", "index", "embedding"}`` each,
    ``embedding`` a list of floats or a base64 string per ``encoding_format``); ``usage``: its
    ``usage`` object when it sent one; ``model``: the model it names (else the one asked for).
    """

    model: str
    data: Sequence[Mapping[str, Any]]
    usage: Mapping[str, Any] | None = None


class EmbeddingProvider(Protocol):
    """A provider whose API also computes embeddings."""

    @property
    def id(self) -> str: ...

    async def embed(
        self, model: str, inputs: list[str] | list[list[int]], params: Mapping[str, Any]
    ) -> EmbeddingResult:
        """Embed every input in one upstream request. ``params``: ``encoding_format`` and
        ``dimensions`` are passed through (others are not sent).

        Raises ``ProviderError`` (the same kinds as ``stream``). On cancellation the upstream
        connection is closed before this returns.
        """
        ...


def supports_embeddings(provider: object) -> TypeGuard[EmbeddingProvider]:
    """Whether ``provider`` can ``embed`` (a caller answers 400 naming it when it cannot)."""
    return callable(getattr(provider, "embed", None))
