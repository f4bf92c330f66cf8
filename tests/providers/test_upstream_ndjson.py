from __future__ import annotations

import random

import pytest

from gateway.providers.upstream_ndjson import NDJSONDecodeError, NDJSONDecoder

SAMPLE = (
    b"\xef\xbb\xbf"  # a byte-order mark, skipped
    b'{"message": {"content": "h\xc3\xa9llo \xf0\x9f\x98\x80"}, "done": false}\n'
    b"\n"
    b'  {"a": [1, 2, {"b": null}]}  \r\n'
    b"\r\n"
    b"42\n"
    b'{"done": true, "eval_count": 3}'  # the last line without its newline
)
SAMPLE_VALUES: list[str] = [
    '{"message": {"content": "héllo 😀"}, "done": false}',
    '{"a": [1, 2, {"b": null}]}',
    "42",
    '{"done": true, "eval_count": 3}',
]


def decode(*pieces: bytes, max_line_chars: int | None = None) -> list[str]:
    if max_line_chars is None:
        decoder = NDJSONDecoder()
    else:
        decoder = NDJSONDecoder(max_line_chars=max_line_chars)
    lines = [line for piece in pieces for line in decoder.feed(piece)]
    return lines + decoder.close()


def test_whole_body() -> None:
    assert decode(SAMPLE) == SAMPLE_VALUES


def test_every_split_point_gives_the_same_values() -> None:
    for cut in range(len(SAMPLE) + 1):
        assert decode(SAMPLE[:cut], SAMPLE[cut:]) == SAMPLE_VALUES, cut


def test_one_byte_at_a_time() -> None:
    assert decode(*(SAMPLE[i : i + 1] for i in range(len(SAMPLE)))) == SAMPLE_VALUES


def test_random_splits() -> None:
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(SAMPLE)), rng.randint(1, 12)))
        pieces = [SAMPLE[a:b] for a, b in zip([0, *cuts], [*cuts, len(SAMPLE)], strict=True)]
        assert decode(*pieces) == SAMPLE_VALUES


def test_lines_come_as_soon_as_they_end() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b"') == ['{"a": 1}']
    assert decoder.feed(b": 2}") == []
    assert decoder.feed(b"\n") == ['{"b": 2}']
    assert decoder.close() == []


def test_lines_are_not_parsed() -> None:
    assert decode(b'{not json}\n{"truncated') == ["{not json}", '{"truncated']


def test_empty_body() -> None:
    assert decode() == []
    assert decode(b"", b"\n\n  \n") == []


@pytest.mark.parametrize(
    ("pieces", "message"),
    [
        ((b"\xff\n",), "not valid UTF-8"),
        ((b'{"a": "\xc3',), "ends inside a UTF-8 character"),
    ],
)
def test_invalid_bodies(pieces: tuple[bytes, ...], message: str) -> None:
    with pytest.raises(NDJSONDecodeError, match=message):
        decode(*pieces)


def test_line_size_cap() -> None:
    line = b'{"text": "' + b"x" * 100 + b'"}'
    assert decode(line + b"\n", max_line_chars=200) == [line.decode()]
    with pytest.raises(NDJSONDecodeError, match="exceeds 50"):
        decode(line + b"\n", max_line_chars=50)
    with pytest.raises(NDJSONDecodeError, match="exceeds 50"):
        decode(*(line[i : i + 7] for i in range(0, len(line), 7)), max_line_chars=50)
