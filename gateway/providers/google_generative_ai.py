"""The ``google-generative-ai`` provider: the Gemini API, always streamed.

``POST {root}/v1beta/models/{model}:streamGenerateContent?alt=sse``; ``baseUrl`` may be given with
or without its ``/v1beta`` (``https://generativelanguage.googleapis.com`` and
``https://generativelanguage.googleapis.com/v1beta`` both work). Headers: ``x-goog-api-key`` (the
``apiKey``), then the configured ``headers``. The request is translated by ``gemini_request`` and
``gemini_schema`` (see there for what is mapped and what is dropped), the answer by
``gemini_stream.GeminiStream``; a JSON answer (one response object or an array of them) is
accepted too.
"""

from __future__ import annotations

from gateway.providers.base import Emit, ModelRequest
from gateway.providers.gemini_request import gemini_request, gemini_url
from gateway.providers.gemini_stream import GeminiStream
from gateway.providers.upstream_http import HttpProvider, UpstreamHttp, json_body, upstream_headers
from gateway.settings import ProviderSettings

__all__ = ["GoogleGenerativeAIProvider"]


class GoogleGenerativeAIProvider(HttpProvider):
    """A ``Provider`` for the Gemini API; one connection pool per instance."""

    def __init__(self, settings: ProviderSettings, *, http: UpstreamHttp | None = None) -> None:
        super().__init__(settings, http=http)
        self._headers = upstream_headers(
            settings, "text/event-stream", key_header="x-goog-api-key", key_format="{}"
        )

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        """Stream ``request`` from Gemini, emitting events in order, then one ``Finish``.

        Raises ``ProviderError`` (``bad_request`` when the conversation cannot be translated,
        before anything is sent). On cancellation the upstream connection is closed before the
        cancellation propagates.
        """
        url = gemini_url(self._settings.base_url, request.model)
        translator = GeminiStream(self.id)
        async with self._http.open_stream(
            url, body=json_body(gemini_request(request, self.id)), headers=self._headers
        ) as upstream:
            if "json" in upstream.content_type.lower():
                document = await upstream.read_json()
                for chunk in document if isinstance(document, list) else [document]:
                    for event in translator.feed_chunk(chunk):
                        await emit(event)
            else:
                await upstream.relay_events(translator, emit)
        for event in translator.finish():
            await emit(event)
