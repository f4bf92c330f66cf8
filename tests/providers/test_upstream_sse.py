from __future__ import annotations

import json
import random

import pytest

from gateway.providers.upstream_sse import SSEDecodeError, SSEDecoder, SSEEvent

SAMPLE = (
    b": connected\n\n"
    b'data: {"a": 1}\n\n'
    b"event: content_block_delta\n"
    b'data: {"text": "h\xc3\xa9llo \xf0\x9f\x98\x80"}\n\n'
    b"data: line one\n"
    b"data: line two\n\n"
    b"data: [DONE]\n\n"
)
SAMPLE_EVENTS = [
    SSEEvent('{"a": 1}'),
    SSEEvent('{"text": "héllo 😀"}', "content_block_delta"),
    SSEEvent("line one\nline two"),
    SSEEvent("[DONE]"),
]


def decode(*pieces: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for piece in pieces for event in decoder.feed(piece)]
    return events + decoder.close()


def test_whole_body() -> None:
    assert decode(SAMPLE) == SAMPLE_EVENTS


def test_every_split_point_gives_the_same_events() -> None:
    for cut in range(len(SAMPLE) + 1):
        assert decode(SAMPLE[:cut], SAMPLE[cut:]) == SAMPLE_EVENTS, cut


def test_byte_by_byte() -> None:
    assert decode(*(SAMPLE[i : i + 1] for i in range(len(SAMPLE)))) == SAMPLE_EVENTS


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_other_line_ends_split_anywhere(newline: bytes) -> None:
    body = SAMPLE.replace(b"\n", newline)
    rng = random.Random(7)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(body)), 6))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        assert decode(*pieces) == SAMPLE_EVENTS


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # The "\n" pairs with the previous "\r": only the blank line after it dispatches.
    assert decoder.feed(b"\n") == []
    assert decoder.feed(b"\r\n") == [SSEEvent("a")]


def test_events_are_returned_as_soon_as_complete() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"x"') == []
    assert decoder.feed(b": 1}\n") == []
    assert decoder.feed(b"\ndata: next") == [SSEEvent('{"x": 1}')]
    assert decoder.close() == [SSEEvent("next")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    body = b": ping\n\nid: 3\nretry: 10\nfoo: bar\nthis line is not sse\ndata: x\n\n"
    assert decode(body) == [SSEEvent("x")]


def test_malformed_line_alone_dispatches_nothing() -> None:
    assert decode(b"this line is not an SSE field\n\ndata: ok\n\n") == [SSEEvent("ok")]


def test_event_without_data_is_dropped_and_its_type_reset() -> None:
    assert decode(b"event: ping\n\ndata: x\n\n") == [SSEEvent("x")]


def test_field_value_spacing() -> None:
    assert decode(b"data:x\n\ndata:  y\n\ndata\n\n") == [
        SSEEvent("x"),
        SSEEvent(" y"),
        SSEEvent(""),
    ]


def test_byte_order_mark_is_dropped_at_start_only() -> None:
    assert decode(b"\xef\xbb\xbfdata: a\n\n") == [SSEEvent("a")]
    assert decode(b"data: \xef\xbb\xbfa\n\n") == [SSEEvent("\ufeffa")]


def test_unicode_line_separators_inside_data_are_not_line_ends() -> None:
    data = '{"t": "a\u2028b\u0085c\x0cd"}'
    assert decode(f"data: {data}\n\n".encode()) == [SSEEvent(data)]


def test_close_delivers_a_pending_event_without_blank_line() -> None:
    assert decode(b"data: last") == [SSEEvent("last")]
    assert decode(b"data: last\n") == [SSEEvent("last")]
    assert decode(b"") == []


def test_invalid_utf8_is_an_error() -> None:
    with pytest.raises(SSEDecodeError, match="UTF-8"):
        SSEDecoder().feed(b"data: \xff\n\n")


def test_truncated_utf8_at_close_is_an_error() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: \xc3") == []
    with pytest.raises(SSEDecodeError, match="UTF-8"):
        decoder.close()


def test_size_cap_on_a_line_and_on_an_event() -> None:
    with pytest.raises(SSEDecodeError, match="exceeds"):
        SSEDecoder(max_event_chars=10).feed(b"data: 0123456789abc")
    decoder = SSEDecoder(max_event_chars=10)
    with pytest.raises(SSEDecodeError, match="exceeds"):
        decoder.feed(b"data: 01234\ndata: 56789\n")


def openai_stream() -> tuple[bytes, list[SSEEvent]]:
    """A realistic OpenAI stream: role chunk, text deltas (multi-byte characters included), a
    keep-alive comment, the finish chunk, the usage chunk and ``[DONE]``."""
    chunks = [{"delta": {"role": "assistant", "content": ""}, "finish_reason": None}]
    chunks += [
        {"delta": {"content": word}, "finish_reason": None}
        for word in ["Bonjour", " à", " tous", " 😀", " \u2028ok", " ∑"]
    ]
    chunks.append({"delta": {}, "finish_reason": "stop"})
    datas = [
        json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "choices": [dict(index=0, **c)],
            },
            ensure_ascii=False,
        )
        for c in chunks
    ]
    datas.append('{"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 3}}')
    body = "".join(f"data: {data}\n\n" for data in datas[:3]) + ": keep-alive\n\n"
    body += "".join(f"data: {data}\n\n" for data in datas[3:]) + "data: [DONE]\n\n"
    return body.encode(), [SSEEvent(data) for data in [*datas, "[DONE]"]]


def test_openai_stream_split_at_every_byte_gives_the_same_events() -> None:
    body, events = openai_stream()
    assert decode(body) == events
    for cut in range(len(body) + 1):
        assert decode(body[:cut], body[cut:]) == events, cut


def test_openai_stream_in_random_pieces_gives_the_same_events() -> None:
    body, events = openai_stream()
    rng = random.Random(11)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(body)), rng.randint(2, 12)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        assert decode(*pieces) == events, cuts


def test_split_character_then_whole_pieces() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: "\xf0\x9f') == []  # the incremental decoder holds two bytes
    assert decoder.feed(b'\x98\x80"\n\n') == [SSEEvent('"😀"')]
    assert decoder.feed(b"data: \xc3\xa9\n\n") == [SSEEvent("é")]  # whole again
    with pytest.raises(SSEDecodeError, match="not valid UTF-8"):
        decoder.feed(b"data: \xc3(\n\n")


def test_a_character_cut_short_by_the_next_piece_is_an_error() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: \xc3") == []
    with pytest.raises(SSEDecodeError, match="not valid UTF-8"):
        decoder.feed(b"abc\n\n")  # valid on its own, not after the byte held back


def test_line_ends_may_change_between_pieces() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\ndata: b\r") == [SSEEvent("a")]
    assert decoder.feed(b"\n\r\ndata: c\n") == [SSEEvent("b")]  # "\r" + "\n" is one line end
    assert decoder.feed(b"event: x\ndata: d\n\n") == [SSEEvent("c\nd", "x")]


def test_byte_order_mark_alone_then_events() -> None:
    assert decode(b"\xef\xbb\xbf", b"data: a\n\n", b"data: \xef\xbb\xbfb\n\n") == [
        SSEEvent("a"),
        SSEEvent("\ufeffb"),
    ]
