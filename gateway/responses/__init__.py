"""The OpenAI Responses API: request parsing, items, and the response stream, all pure; the
route lives in ``gateway.http.responses`` and stored responses behind
``gateway.sessions.responses``."""
