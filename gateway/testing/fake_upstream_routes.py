"""The fake upstream's routes: which API a request speaks and how to answer it. Pure.

=====================================================  =========  ==================================
route                                                  errors     answer
=====================================================  =========  ==================================
``POST /v1/chat/completions``                          openai     SSE chunks if ``"stream": true``,
                                                                  else a ``chat.completion``
``POST /v1/messages``                                  anthropic  events if ``"stream": true``,
                                                                  else a message
``POST /v1/responses``                                 openai     Responses events if
                                                                  ``"stream": true``, else the
                                                                  response object
``POST /v1beta/models/{model}:streamGenerateContent``  google     SSE chunks with ``?alt=sse``,
                                                                  else a JSON array of them
``POST /v1beta/models/{model}:generateContent``        google     one response object
``POST /api/chat``                                     ollama     NDJSON unless ``"stream": false``
``POST /v1/embeddings``                                openai     the embeddings (never streamed)
=====================================================  =========  ==================================

``GET /v1/models`` is answered by the connection driver itself; anything else is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qs, unquote

from gateway.testing import fake_upstream_render as render
from gateway.testing.fake_upstream_embeddings import embeddings_response
from gateway.testing.fake_upstream_gemini import gemini_chunks, gemini_response, gemini_stream
from gateway.testing.fake_upstream_ollama import ollama_response, ollama_stream
from gateway.testing.fake_upstream_responses import responses_object, responses_stream
from gateway.testing.fake_upstream_script import Script, Step

__all__ = ["ErrorShape", "Route", "find_route"]

ErrorShape: TypeAlias = Literal["openai", "anthropic", "google", "ollama"]

_SSE = "text/event-stream"
_GEMINI = re.compile(
    r"/v1beta/models/(?P<model>[^/:]+):(?P<method>streamGenerateContent|generateContent)"
)


@dataclass(frozen=True, slots=True)
class Route:
    """How to answer one request: ``whole`` renders a JSON document, ``stream`` the steps of a
    stream of ``stream_type`` (``None``: this route never streams). ``request`` is the request
    document the renderers read (with the model named in the path, for Gemini)."""

    errors: ErrorShape
    request: Mapping[str, Any]
    wants_stream: bool
    whole: Callable[[Script, Mapping[str, Any]], Any]
    stream: Callable[[Script, Mapping[str, Any]], Iterable[Step]] | None = None
    stream_type: str = _SSE


def find_route(method: str, target: str, body: Any) -> Route | None:
    """The route of a request (``target`` with its query string), or ``None`` (404)."""
    if method != "POST":
        return None
    path, _, query = target.partition("?")
    request: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    streaming = bool(request.get("stream"))
    if path == "/v1/chat/completions":
        return Route("openai", request, streaming, render.openai_completion, render.openai_stream)
    if path == "/v1/messages":
        return Route(
            "anthropic", request, streaming, render.anthropic_message, render.anthropic_stream
        )
    if path == "/v1/responses":
        return Route("openai", request, streaming, responses_object, responses_stream)
    if path == "/v1/embeddings":
        return Route("openai", request, False, lambda script, req: embeddings_response(req))
    if path == "/api/chat":
        wants = request.get("stream") is not False  # Ollama streams unless told not to
        return Route(
            "ollama", request, wants, ollama_response, ollama_stream, "application/x-ndjson"
        )
    match = _GEMINI.fullmatch(path)
    if match is None:
        return None
    request["model"] = unquote(match["model"])
    if match["method"] == "generateContent":
        return Route("google", request, False, gemini_response)
    if "sse" in parse_qs(query).get("alt", ()):
        return Route("google", request, True, gemini_response, gemini_stream)
    return Route("google", request, False, gemini_chunks)
