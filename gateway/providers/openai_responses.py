"""The ``openai-responses`` provider: OpenAI's Responses API, always streamed, plus embeddings.

``POST {baseUrl}/responses`` (``baseUrl`` usually ends in ``/v1``, as for ``openai-completions``)
with ``Authorization: Bearer <apiKey>`` and the configured headers. The request is built by
``responses_wire.responses_request`` (``stream: true``, ``store: false``; what is mapped and what
is dropped is listed there), the event stream translated by ``responses_stream.ResponsesStream``.
A 2xx JSON answer (an upstream or proxy that ignores ``stream``) is translated from the whole
response object. Embeddings: ``POST {baseUrl}/embeddings`` (see ``openai_embeddings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.providers.base import EmbeddingResult, Emit, ModelRequest, protocol_error
from gateway.providers.openai_embeddings import OpenAIEmbeddings
from gateway.providers.responses_stream import ResponsesStream
from gateway.providers.responses_wire import response_events, responses_request
from gateway.providers.upstream_http import HttpProvider, UpstreamHttp, json_body, upstream_headers
from gateway.settings import ProviderSettings

__all__ = ["OpenAIResponsesProvider"]


class OpenAIResponsesProvider(HttpProvider):
    """A ``Provider`` (and ``EmbeddingProvider``) for the Responses API; one connection pool."""

    def __init__(self, settings: ProviderSettings, *, http: UpstreamHttp | None = None) -> None:
        super().__init__(settings, http=http)
        self._url = settings.base_url.rstrip("/") + "/responses"
        self._embeddings = OpenAIEmbeddings(settings, self._http)
        self._headers = upstream_headers(settings, "text/event-stream")

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        """Stream ``request`` from the upstream, emitting events in order, then one ``Finish``.

        Raises ``ProviderError`` (``bad_request`` when the conversation cannot be translated,
        before anything is sent). On cancellation the upstream connection is closed before the
        cancellation propagates.
        """
        translator = ResponsesStream(self.id)
        async with self._http.open_stream(
            self._url, body=json_body(responses_request(request, self.id)), headers=self._headers
        ) as upstream:
            if "json" in upstream.content_type.lower():
                document = await upstream.read_json()
                if not isinstance(document, dict):
                    raise protocol_error(self.id, "sent invalid JSON")
                for event in response_events(document, self.id):
                    await emit(event)
                return
            await upstream.relay_events(translator, emit)
        for event in translator.finish():
            await emit(event)

    async def embed(
        self, model: str, inputs: list[str] | list[list[int]], params: Mapping[str, Any]
    ) -> EmbeddingResult:
        """See ``EmbeddingProvider.embed``."""
        return await self._embeddings.embed(model, inputs, params)
