"""The ``ollama`` provider: Ollama's native chat API, always streamed.

``POST {baseUrl}/api/chat`` with ``stream: true``; ``baseUrl`` is the server root
(``http://127.0.0.1:11434``), and a trailing ``/v1`` (the OpenAI-compatible URL people copy) is
ignored. No API key is needed; ``apiKey``, if set, is sent as ``Authorization: Bearer`` (for a
server behind an authenticating proxy), then the configured ``headers``. The request is translated
by ``ollama_request``, the NDJSON answer decoded by ``upstream_ndjson`` and translated by
``ollama_stream.OllamaStream``.
"""

from __future__ import annotations

from gateway.providers.base import Emit, ModelRequest, ProviderError
from gateway.providers.ollama_request import ollama_request, ollama_url
from gateway.providers.ollama_stream import OllamaStream
from gateway.providers.upstream_http import (
    HttpProvider,
    UpstreamBody,
    UpstreamHttp,
    json_body,
    upstream_headers,
)
from gateway.providers.upstream_ndjson import NDJSONDecodeError, NDJSONDecoder
from gateway.settings import ProviderSettings

__all__ = ["OllamaProvider"]


class OllamaProvider(HttpProvider):
    """A ``Provider`` for an Ollama server; one connection pool per instance."""

    def __init__(self, settings: ProviderSettings, *, http: UpstreamHttp | None = None) -> None:
        super().__init__(settings, http=http)
        self._url = ollama_url(settings.base_url)
        self._headers = upstream_headers(settings, "application/x-ndjson")

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        """Stream ``request`` from Ollama, emitting events in order, then one ``Finish``.

        Raises ``ProviderError`` (``bad_request`` when the conversation cannot be translated,
        before anything is sent). On cancellation (also while ``emit`` waits) the upstream
        connection is closed before the cancellation propagates.
        """
        translator = OllamaStream(self.id)
        async with self._http.open_stream(
            self._url, body=json_body(ollama_request(request, self.id)), headers=self._headers
        ) as upstream:
            await self._relay(upstream, translator, emit)
        for event in translator.finish():
            await emit(event)

    async def _relay(self, upstream: UpstreamBody, translator: OllamaStream, emit: Emit) -> None:
        """Decode the body line by line until the ``done`` line (the rest is then drained) or
        the end of the body, emitting what ``translator`` makes of each line."""
        decoder = NDJSONDecoder()
        while not translator.done:
            chunk = await upstream.receive_some()
            try:
                lines = decoder.feed(chunk) if chunk is not None else decoder.close()
            except NDJSONDecodeError as exc:
                message = f"Provider '{self.id}' sent an invalid NDJSON stream: {exc}"
                raise ProviderError("protocol", message, provider=self.id) from None
            for line in lines:
                for event in translator.feed(line):
                    await emit(event)
            if chunk is None:
                return
        await upstream.drain()
