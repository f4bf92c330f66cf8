"""Embeddings from an OpenAI-compatible upstream: ``POST {baseUrl}/embeddings``.

One request carries the whole input array: ``{"model", "input", "encoding_format"?,
"dimensions"?}`` (only those two parameters are passed through). The answer's ``data`` and
``usage`` come back untouched in an ``EmbeddingResult``. The request goes through the provider's
``UpstreamHttp`` like a completion: the same deadlines, the same status mapping
(``upstream_errors``), and a cancelled caller closes the upstream connection at once. A 2xx body
that is not JSON, or has no ``data`` list, is a ``protocol`` error; a 2xx body with an ``error``
member raises that error.

``OpenAIEmbeddings`` is used by the ``openai-completions`` and ``openai-responses`` providers,
on their own connection pools.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gateway.providers.base import EmbeddingResult, ProviderError
from gateway.providers.upstream_errors import error_from_event
from gateway.providers.upstream_http import UpstreamHttp, upstream_headers
from gateway.settings import ProviderSettings
from gateway.types import JSONObject

__all__ = [
    "EMBEDDING_PARAMS",
    "OpenAIEmbeddings",
    "embeddings_body",
    "embeddings_result",
]

EMBEDDING_PARAMS = ("encoding_format", "dimensions")

# Thousands of inputs of thousands of floats each, written as JSON text.
_RESPONSE_LIMIT = 128 * 1024 * 1024


def embeddings_body(
    model: str, inputs: list[str] | list[list[int]], params: Mapping[str, Any]
) -> JSONObject:
    """The request document: the model, every input, and the parameters passed through."""
    body: JSONObject = {"model": model, "input": inputs}
    for key in EMBEDDING_PARAMS:
        if params.get(key) is not None:
            body[key] = params[key]
    return body


def embeddings_result(provider: str, model: str, data: bytes) -> EmbeddingResult:
    """The ``EmbeddingResult`` of a 2xx answer body. Raises ``ProviderError``."""
    try:
        document = json.loads(data)
    except ValueError:
        document = None
    if isinstance(document, dict) and document.get("error"):
        raise error_from_event(provider, document["error"])
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise ProviderError(
            "protocol",
            f"Provider '{provider}' sent an embeddings answer without a data list",
            provider=provider,
        )
    usage = document.get("usage")
    answered = document.get("model")
    return EmbeddingResult(
        model=answered if isinstance(answered, str) and answered else model,
        data=document["data"],
        usage=usage if isinstance(usage, dict) else None,
    )


class OpenAIEmbeddings:
    """``embed`` for one provider, over that provider's ``UpstreamHttp`` (not closed here)."""

    def __init__(self, settings: ProviderSettings, http: UpstreamHttp) -> None:
        self._settings = settings
        self._http = http
        self._url = settings.base_url.rstrip("/") + "/embeddings"
        self._headers = upstream_headers(settings, "application/json")

    async def embed(
        self, model: str, inputs: list[str] | list[list[int]], params: Mapping[str, Any]
    ) -> EmbeddingResult:
        """Embed ``inputs`` in one request. Raises ``ProviderError``; on cancellation the
        upstream connection is closed before this returns."""
        body = json.dumps(embeddings_body(model, inputs, params), separators=(",", ":"))
        async with self._http.open_stream(
            self._url, body=body.encode(), headers=self._headers
        ) as upstream:
            data = await upstream.read_all(_RESPONSE_LIMIT)
        return embeddings_result(self._settings.id, model, data)
