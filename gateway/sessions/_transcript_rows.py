"""What every transcript store shares, whatever its database: how a message becomes a row and
back, the history cursors, the argument checks and what ``context`` keeps. Pure.

A message row is ``session_key, seq, role, content, name, tool_calls, tool_call_id, run_id,
status, usage, created_at_ms, channel``. ``content``, ``tool_calls`` and ``usage`` are JSON text
(``content`` may be a string, a list of parts or SQL NULL). ``seq`` numbers a session's messages
from 1; ``usage`` is kept on a turn's last message; every message of a turn carries the turn's
``run_id``, ``status`` and ``channel`` (NULL: none given). Keys of a message other than role,
content, name, tool_calls and tool_call_id are not kept.

Following a session (``appended_after``): the rows from the follower's mark on, read in one
snapshot with whether the session exists, say whether it still continues from that mark (its
message there is the one the follower saw) and what came after.

What ``context`` sends the model (``context_messages``): ``error`` turns are left out (the
client got an error and will retry with the same new messages; the stores leave them out in
SQL), ``aborted`` turns are kept (the user saw that partial reply) minus their assistant
``tool_calls`` (cut off, never answered) and minus an assistant reply left empty, and the
window never starts with tool results whose assistant ``tool_calls`` message fell outside it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from typing import Any, cast

from gateway.sessions.base import START, HistoryPage, TranscriptEntry, TranscriptMark, TurnStatus
from gateway.types import ChatMessage, UsageDict

STATUSES = ("complete", "aborted", "error")
# The columns an entry is read from (``entry(*row)``), in this order.
ENTRY_COLUMNS = (
    "seq, role, content, name, tool_calls, tool_call_id, run_id, status, usage, created_at_ms,"
    " channel"
)
# The columns a row of ``turn_rows`` fills, in this order, and how many there are.
ROW_COLUMNS = "session_key, " + ENTRY_COLUMNS
ROW_WIDTH = ROW_COLUMNS.count(",") + 1
# What ``context_messages`` needs of each message, in this order.
CONTEXT_COLUMNS = "role, content, name, tool_calls, tool_call_id, status"

Row = tuple[Any, ...]


def check_turn(status: str) -> None:
    """``ValueError`` unless ``status`` is a turn status."""
    if status not in STATUSES:
        raise ValueError(f"invalid turn status {status!r}")


def check_context_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")


def check_history(limit: int, cursor: str | None) -> int:
    """The ``seq`` to read after; ``ValueError`` for a ``limit`` below 1 or a foreign cursor."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return decode_cursor(cursor)


def turn_rows(
    key: str,
    last_seq: int,
    run_id: str,
    messages: Sequence[ChatMessage],
    status: TurnStatus,
    usage: UsageDict | None,
    now_ms: int,
    channel: str | None = None,
) -> list[Row]:
    """The rows (``ROW_COLUMNS``) of a turn appended after message ``last_seq``."""
    return [
        (
            key,
            last_seq + offset,
            message["role"],
            dump(message.get("content")),
            message.get("name"),
            dump(message.get("tool_calls")),
            message.get("tool_call_id"),
            run_id,
            status,
            dump(usage) if offset == len(messages) else None,
            now_ms,
            channel,
        )
        for offset, message in enumerate(messages, start=1)
    ]


def context_messages(newest_first: Iterable[Row]) -> list[ChatMessage]:
    """The conversation for the model, oldest first, from rows (``CONTEXT_COLUMNS``) of the
    turns that are not ``error``, newest first, already cut to the window."""
    messages: list[ChatMessage] = []
    for role, content, name, tool_calls, tool_call_id, status in reversed(list(newest_first)):
        message = message_of(role, content, name, tool_calls, tool_call_id)
        if status == "aborted" and role == "assistant":
            # Calls cut off by the abort were never complete nor answered: keep only the text.
            message.pop("tool_calls", None)
            if not message["content"]:
                continue
        messages.append(message)
    # Tool results whose assistant tool_calls message fell outside the window are orphans.
    start = 0
    while start < len(messages) and messages[start]["role"] == "tool":
        start += 1
    return messages[start:]


def history_page(rows: Sequence[Row], limit: int, last: Row | None) -> HistoryPage:
    """A page from up to ``limit + 1`` rows (``ENTRY_COLUMNS``) read oldest first: one more
    than the page means there is a next one. ``last``: the ``seq, run_id`` of the session's
    newest message, read in the same snapshot (``None``: it has none)."""
    entries = [entry(*row) for row in rows[:limit]]
    more = len(rows) > limit
    end = START if last is None else TranscriptMark(int(last[0]), str(last[1]))
    return HistoryPage(entries, encode_cursor(entries[-1].seq) if more else None, end)


def appended_after(
    after: TranscriptMark, limit: int, exists: bool, rows: Sequence[Row]
) -> list[TranscriptEntry] | None:
    """What a follower at ``after`` gets from ``rows`` (``ENTRY_COLUMNS``, oldest first, from
    ``seq >= after.seq``, at most ``limit + 1``): the first ``limit`` entries after its mark,
    or ``None`` when the session is gone or no longer holds, at the mark, the message the
    follower saw there (it was reset since)."""
    if not exists:
        return None
    if after.seq > 0:
        if not rows or rows[0][0] != after.seq or rows[0][6] != after.run_id:
            return None
        rows = rows[1:]
    return [entry(*row) for row in rows[:limit]]


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The ``seq`` a cursor points after (0 for ``None``); ``ValueError`` if it is not ours."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        label, _, seq = text.partition(":")
        if label == "after" and seq.isascii() and seq.isdigit():
            return int(seq)
    except (binascii.Error, UnicodeDecodeError):
        pass
    raise ValueError(f"invalid history cursor {cursor!r}")


def message_of(
    role: str,
    content: str | None,
    name: str | None,
    tool_calls: str | None,
    tool_call_id: str | None,
) -> ChatMessage:
    message: ChatMessage = {"role": role, "content": load(content)}
    if name is not None:
        message["name"] = name
    if tool_calls is not None:
        message["tool_calls"] = load(tool_calls)
    if tool_call_id is not None:
        message["tool_call_id"] = tool_call_id
    return message


def entry(
    seq: int,
    role: str,
    content: str | None,
    name: str | None,
    tool_calls: str | None,
    tool_call_id: str | None,
    run_id: str,
    status: str,
    usage: str | None,
    created_at_ms: int,
    channel: str | None = None,
) -> TranscriptEntry:
    return TranscriptEntry(
        seq=seq,
        message=message_of(role, content, name, tool_calls, tool_call_id),
        run_id=run_id,
        status=cast(TurnStatus, status),
        created_at_ms=created_at_ms,
        usage=load(usage),
        channel=channel,
    )


def dump(value: object) -> str | None:
    if value is None:
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def load(text: str | None) -> Any:
    return None if text is None else json.loads(text)
