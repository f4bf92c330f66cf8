"""The pure parts every store shares (``_transcript_rows``, ``_response_rows``), without a
database: rows and back, cursors, the ``context`` rules, pages of input items."""

from __future__ import annotations

import pytest

from gateway.sessions import _response_rows, _transcript_rows
from gateway.sessions.base import START, TranscriptMark
from gateway.sessions.responses import StoredResponse
from gateway.types import ChatMessage, UsageDict


def test_a_turn_becomes_rows_and_entries_and_back() -> None:
    messages: list[ChatMessage] = [
        {"role": "user", "content": [{"type": "text", "text": "ø"}], "name": "ana"},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    usage: UsageDict = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    rows = _transcript_rows.turn_rows("k", 7, "r", messages, "complete", usage, 1234)
    assert [row[:2] for row in rows] == [("k", 8), ("k", 9)]
    assert rows[0][3] == '[{"type":"text","text":"ø"}]'  # compact, not ASCII-escaped
    assert [row[9] for row in rows] == [
        None,
        '{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}',
    ]
    entries = [_transcript_rows.entry(*row[1:]) for row in rows]
    assert [e.message for e in entries] == messages
    assert entries[1].usage == usage and entries[0].created_at_ms == 1234


def test_channels_ride_on_every_row_of_a_turn() -> None:
    messages: list[ChatMessage] = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    rows = _transcript_rows.turn_rows("k", 0, "r", messages, "complete", None, 5, "web")
    assert all(len(row) == _transcript_rows.ROW_WIDTH for row in rows)
    assert [_transcript_rows.entry(*row[1:]).channel for row in rows] == ["web", "web"]


def test_what_a_follower_gets_after_its_mark() -> None:
    three: list[ChatMessage] = [{"role": "user", "content": "x"}] * 3
    rows = _transcript_rows.turn_rows("k", 2, "r2", three, "complete", None, 5)
    entries = [row[1:] for row in rows]  # seq 3, 4, 5 by run r2
    appended = _transcript_rows.appended_after
    # From the start: everything, at most ``limit``.
    assert [e.seq for e in appended(START, 2, True, entries) or []] == [3, 4]
    # From a mark: the row at the mark is the one the follower saw, then what follows.
    assert [e.seq for e in appended(TranscriptMark(3, "r2"), 10, True, entries) or []] == [4, 5]
    assert appended(TranscriptMark(5, "r2"), 10, True, entries[2:]) == []
    # Another run at the mark, or no row there any more: reset since. No session: gone.
    assert appended(TranscriptMark(3, "r1"), 10, True, entries) is None
    assert appended(TranscriptMark(9, "r2"), 10, True, []) is None
    assert appended(TranscriptMark(2, "r1"), 10, True, entries) is None  # seq 2 is gone
    assert appended(START, 10, False, []) is None


def test_a_page_ends_where_the_transcript_ends() -> None:
    three: list[ChatMessage] = [{"role": "user", "content": "x"}] * 3
    rows = _transcript_rows.turn_rows("k", 0, "r", three, "complete", None, 5)
    page = _transcript_rows.history_page([row[1:] for row in rows], 2, (9, "r9"))
    assert page.next_cursor is not None and page.end == TranscriptMark(9, "r9")
    assert _transcript_rows.history_page([], 2, None).end == START


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    for seq in (0, 1, 10**12):
        assert _transcript_rows.decode_cursor(_transcript_rows.encode_cursor(seq)) == seq
    assert _transcript_rows.decode_cursor(None) == 0
    for bad in ("", "nonsense", "!!", "YWZ0ZXI6eA", "YWZ0ZXI6LTE", "YmVmb3JlOjE"):
        with pytest.raises(ValueError):
            _transcript_rows.decode_cursor(bad)
    with pytest.raises(ValueError):
        _transcript_rows.check_history(0, None)


def test_context_rules() -> None:
    calls = '[{"id":"c"}]'
    newest_first = [
        ("assistant", '""', None, None, None, "aborted"),  # an empty aborted reply: dropped
        ("assistant", '"cut"', None, calls, None, "aborted"),  # aborted: the calls go
        ("tool", '"r"', None, None, "c", "complete"),
        ("tool", '"r"', None, None, "c", "complete"),  # the window starts on orphans
    ]
    assert _transcript_rows.context_messages(newest_first) == [
        {"role": "assistant", "content": "cut"}
    ]
    assert _transcript_rows.context_messages([]) == []


def test_items_page() -> None:
    items = [{"id": f"i{n}"} for n in range(5)]
    page = _response_rows.items_page(items, 2, "i1", "asc")
    assert [i["id"] for i in page.items] == ["i2", "i3"] and page.has_more
    page = _response_rows.items_page(items, 9, "i1", "desc")
    assert [i["id"] for i in page.items] == ["i0"] and not page.has_more
    assert [i["id"] for i in items] == [f"i{n}" for n in range(5)]  # not reordered in place
    with pytest.raises(ValueError):
        _response_rows.items_page(items, 1, "gone", "asc")


def test_a_response_becomes_rows_and_back() -> None:
    response = {"id": "r", "output": [{"id": "o", "type": "message"}]}
    stored = StoredResponse("r", 5, "main", None, "p", response, [{"id": "i", "type": "x"}])
    row = _response_rows.response_row(stored, 99)
    assert row[:6] == ("r", 5, 99, "main", None, "p")
    assert _response_rows.item_rows(stored) == [
        ("r", "input", 0, "i", '{"id":"i","type":"x"}'),
        ("r", "output", 0, "o", '{"id":"o","type":"message"}'),
    ]
    back = _response_rows.stored((row[0], row[1], *row[3:]), [{"id": "i", "type": "x"}])
    assert back == stored
