"""CORS decisions (pure): which origins may call, what a preflight is answered.

Off unless ``gateway.http.cors.allowOrigins`` lists origins (or ``"*"``). Browsers' preflights
are answered before authentication (they carry no credentials); actual responses get
``Access-Control-Allow-Origin`` for an allowed origin and expose the headers clients read.
"""

from __future__ import annotations

from collections.abc import Sequence

ALLOWED_METHODS = b"GET, HEAD, POST, OPTIONS"
EXPOSED_HEADERS = b"x-openclaw-session-key, x-request-id, retry-after"
_FIXED_HEADERS = {"authorization", "content-type", "x-request-id", "accept", "cache-control"}
_HEADER_PREFIXES = ("x-openclaw-", "x-stainless-", "openai-")

Headers = list[tuple[bytes, bytes]]


class CorsPolicy:
    def __init__(self, allow_origins: Sequence[str]) -> None:
        self._any = "*" in allow_origins
        self._origins = {o.rstrip("/").lower() for o in allow_origins if o != "*"}

    @property
    def enabled(self) -> bool:
        return self._any or bool(self._origins)

    def active(self) -> CorsPolicy | None:
        """This policy, or ``None`` when it allows nothing (CORS off)."""
        return self if self.enabled else None

    def allows(self, origin: str) -> bool:
        return self._any or origin.rstrip("/").lower() in self._origins

    def preflight(self, origin: str, requested_headers: str) -> Headers | None:
        """Headers of the 204 answer to a preflight, or ``None`` to refuse it."""
        if not self.allows(origin):
            return None
        wanted = [h.strip() for h in requested_headers.split(",") if h.strip()]
        granted = [h for h in wanted if allowed_header(h)]
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-allow-headers", ", ".join(granted).encode("latin-1")),
            (b"access-control-max-age", b"600"),
            (b"vary", b"Origin"),
        ]

    def response_headers(self, origin: str) -> Headers:
        if not self.allows(origin):
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
            (b"vary", b"Origin"),
        ]


def allowed_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in _FIXED_HEADERS or lowered.startswith(_HEADER_PREFIXES)
