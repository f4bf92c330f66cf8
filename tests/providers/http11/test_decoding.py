"""Content-Encoding decoding, without sockets, fed in pieces of every size."""

from __future__ import annotations

import gzip
import zlib

import pytest

from gateway.providers.http11.decoding import ContentDecoder, content_decoder
from gateway.providers.http11.wire import InvalidResponse

TEXT = b"data: " + b"hello world " * 500 + b"\n\n"


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def decode_in_pieces(decoder: ContentDecoder, data: bytes, size: int) -> bytes:
    out = [decoder.decode(data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(out) + decoder.flush()


@pytest.mark.parametrize("size", [1, 7, 100, 1 << 20])
@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("gzip, deflate", lambda d: zlib.compress(gzip.compress(d))),
        ("identity, GZIP", gzip.compress),
    ],
    ids=["gzip", "x-gzip", "zlib-deflate", "raw-deflate", "gzip-then-deflate", "mixed-case"],
)
def test_decodes(encoding: str, encode: object, size: int) -> None:
    decoder = content_decoder(encoding)
    assert decoder is not None
    assert decode_in_pieces(decoder, encode(TEXT), size) == TEXT  # type: ignore[operator]


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity , identity"])
def test_identity_needs_no_decoder(encoding: str | None) -> None:
    assert content_decoder(encoding) is None


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br", "compress"])
def test_unsupported_codings(encoding: str) -> None:
    with pytest.raises(InvalidResponse, match="unsupported Content-Encoding"):
        content_decoder(encoding)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_garbage_is_an_invalid_response(encoding: str) -> None:
    decoder = content_decoder(encoding)
    assert decoder is not None
    with pytest.raises(InvalidResponse, match=f"undecodable {encoding} body"):
        decoder.decode(b"this is not compressed at all")


def test_garbage_after_a_good_start() -> None:
    decoder = content_decoder("deflate")
    assert decoder is not None
    data = zlib.compress(TEXT)
    decoder.decode(data[:10])
    with pytest.raises(InvalidResponse):
        decoder.decode(b"\xff" * 64)


def test_truncated_body() -> None:
    decoder = content_decoder("gzip")
    assert decoder is not None
    data = gzip.compress(TEXT)
    decoder.decode(data[: len(data) // 2])
    with pytest.raises(InvalidResponse, match="truncated gzip body"):
        decoder.flush()


def test_empty_body() -> None:
    decoder = content_decoder("gzip")
    assert decoder is not None
    assert decoder.decode(b"") == b""
    assert decoder.flush() == b""
