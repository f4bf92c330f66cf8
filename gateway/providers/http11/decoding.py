"""Response body decoding by ``Content-Encoding``: identity, gzip and deflate. Pure.

The client asks for ``Accept-Encoding: identity``; these decoders are for upstreams (and proxies)
that compress anyway. Several encodings (``gzip, deflate``) are undone in reverse order. Any
other coding, or bytes that do not decode, is an ``InvalidResponse``.
"""

from __future__ import annotations

import zlib

from gateway.providers.http11.wire import InvalidResponse

__all__ = ["ContentDecoder", "content_decoder"]

_IDENTITY = frozenset({"", "identity"})


class ContentDecoder:
    """Undoes one response's content codings, fed the body piece by piece."""

    def __init__(self, codings: list[str]) -> None:
        # Applied in reverse: the last coding listed was applied last by the sender.
        self._steps = [_Step(coding) for coding in reversed(codings)]

    def decode(self, data: bytes) -> bytes:
        """The decoded bytes for ``data`` (maybe empty while a decoder buffers)."""
        for step in self._steps:
            data = step.decode(data)
        return data

    def flush(self) -> bytes:
        """What is left once the body ended. Raises ``InvalidResponse`` for a truncated body."""
        data = b""
        for step in self._steps:
            data = step.decode(data) + step.flush()
        return data


class _Step:
    """One coding. Deflate is meant to be zlib-wrapped but is often sent raw: its first two
    bytes tell which (a zlib header is deflate's method 8 and a multiple of 31)."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        self._zlib = None if coding == "deflate" else zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._head = b""  # deflate's first bytes while fewer than two arrived
        self._seen = False

    def decode(self, data: bytes) -> bytes:
        if self._zlib is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            cmf, flg = self._head[0], self._head[1]
            wrapped = cmf & 0x0F == 8 and (cmf << 8 | flg) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
            data, self._head = self._head, b""
        if not data:
            return b""
        self._seen = True
        try:
            return self._zlib.decompress(data)
        except zlib.error:
            raise InvalidResponse(f"undecodable {self._coding} body") from None

    def flush(self) -> bytes:
        if self._head:
            raise InvalidResponse(f"truncated {self._coding} body")
        if self._zlib is None or not self._seen:
            return b""
        rest = self._zlib.flush()
        if not self._zlib.eof:
            raise InvalidResponse(f"truncated {self._coding} body")
        return rest


def content_decoder(content_encoding: str | None) -> ContentDecoder | None:
    """The decoder for a ``Content-Encoding`` header, or ``None`` when the body is sent as is.

    Raises ``InvalidResponse`` for a coding other than identity, gzip (x-gzip) and deflate.
    """
    if content_encoding is None:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c not in _IDENTITY]
    if not codings:
        return None
    for coding in codings:
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise InvalidResponse(f"unsupported Content-Encoding {coding!r}")
    return ContentDecoder(codings)
