"""The transcript store contract (``gateway.sessions.base.TranscriptStore``), run against every
implementation (``tests.sessions.backends``): message shapes, statuses and what ``context``
sends the model, history pages and cursors, listing, reset and delete, concurrent appends,
message channels, and following a session's appends (``wait_appended``).
SQLite-only behaviour (the file, WAL, SIGKILL) is tested in ``test_sqlite``, PostgreSQL-only
behaviour (migrations, several hosts, outages) in ``test_postgres``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from gateway.sessions.base import START, TranscriptMark, TranscriptStore
from gateway.types import ChatMessage, ToolCall, UsageDict
from tests.sessions.backends import Backend


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[TranscriptStore]:
    """This module's store: the transcripts (``conftest``'s ``store`` is admission)."""
    async with backend.open_transcripts() as transcripts:
        yield transcripts


USAGE: UsageDict = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
CALL: ToolCall = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
}


def user(text: str) -> ChatMessage:
    return {"role": "user", "content": text}


def assistant(text: str | None, calls: list[ToolCall] | None = None) -> ChatMessage:
    message: ChatMessage = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return message


def tool(call_id: str, text: str) -> ChatMessage:
    return {"role": "tool", "content": text, "tool_call_id": call_id}


async def test_round_trip_of_every_message_shape(store: TranscriptStore) -> None:
    parts: ChatMessage = {
        "role": "user",
        "name": "ana",
        "content": [
            {"type": "text", "text": "what is this? ✓"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        ],
    }
    await store.append_turn("k", "main", "r1", [parts, assistant(None, [CALL])], "complete", USAGE)
    await store.append_turn(
        "k", "main", "r2", [tool("call_1", "sunny"), assistant("Sunny.")], "complete"
    )

    page = await store.history("k", 10, None)
    assert page is not None and page.next_cursor is None
    assert [entry.message for entry in page.entries] == [
        parts,
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "Sunny."},
    ]
    assert [entry.seq for entry in page.entries] == [1, 2, 3, 4]
    assert [entry.run_id for entry in page.entries] == ["r1", "r1", "r2", "r2"]
    # Usage is kept on the turn's last message.
    assert [entry.usage for entry in page.entries] == [None, USAGE, None, None]
    assert all(entry.created_at_ms > 0 for entry in page.entries)
    assert await store.context("k", None) == [entry.message for entry in page.entries]


async def test_statuses_are_kept_and_shape_the_context(store: TranscriptStore) -> None:
    await store.append_turn("k", "main", "r1", [user("one"), assistant("reply one")], "complete")
    await store.append_turn("k", "main", "r2", [user("two"), assistant("partial")], "error")
    await store.append_turn("k", "main", "r3", [user("three"), assistant("cut", [CALL])], "aborted")
    await store.append_turn("k", "main", "r4", [user("four"), assistant("")], "aborted")
    await store.append_turn("k", "main", "r5", [user("five")], "aborted")

    page = await store.history("k", 50, None)
    assert page is not None
    assert [entry.status for entry in page.entries] == ["complete"] * 2 + ["error"] * 2 + [
        "aborted"
    ] * 5
    assert page.entries[5].message["tool_calls"] == [CALL]  # history keeps everything

    # Errors are left out, aborted replies kept as text (calls dropped), empty replies dropped.
    assert await store.context("k", None) == [
        user("one"),
        assistant("reply one"),
        user("three"),
        assistant("cut"),
        user("four"),
        user("five"),
    ]


async def test_context_limit_keeps_the_newest(store: TranscriptStore) -> None:
    for n in range(5):
        await store.append_turn(
            "k", "main", f"r{n}", [user(f"q{n}"), assistant(f"a{n}")], "complete"
        )
    assert await store.context("k", 3) == [assistant("a3"), user("q4"), assistant("a4")]
    assert await store.context("k", 0) == []
    assert len(await store.context("k", 100)) == 10
    with pytest.raises(ValueError):
        await store.context("k", -1)


async def test_context_never_starts_with_orphaned_tool_results(store: TranscriptStore) -> None:
    second: ToolCall = {**CALL, "id": "call_2"}
    await store.append_turn(
        "k", "main", "r1", [user("weather?"), assistant(None, [CALL, second])], "complete"
    )
    await store.append_turn(
        "k",
        "main",
        "r2",
        [tool("call_1", "sunny"), tool("call_2", "rain"), assistant("Mixed.")],
        "complete",
    )
    # The window starts on the second tool result: both results lose their call, both go.
    assert await store.context("k", 2) == [assistant("Mixed.")]
    assert await store.context("k", 3) == [assistant("Mixed.")]
    # With the assistant call message inside, the results stay.
    assert await store.context("k", 4) == [
        assistant(None, [CALL, second]),
        tool("call_1", "sunny"),
        tool("call_2", "rain"),
        assistant("Mixed."),
    ]


async def test_history_pages_oldest_first(store: TranscriptStore) -> None:
    for n in range(5):
        await store.append_turn("k", "main", f"r{n}", [user(f"q{n}")], "complete")
    seen: list[object] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await store.history("k", 2, cursor)
        assert page is not None
        pages += 1
        seen.extend(entry.message["content"] for entry in page.entries)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"q{n}" for n in range(5)] and pages == 3

    exact = await store.history("k", 5, None)
    assert exact is not None and exact.next_cursor is None
    assert await store.history("missing", 5, None) is None
    for bad in ("nonsense", "!!", "YWZ0ZXI6eA"):  # the last is "after:x"
        with pytest.raises(ValueError):
            await store.history("k", 5, bad)
    with pytest.raises(ValueError):
        await store.history("k", 0, None)


async def test_list_reset_delete(store: TranscriptStore) -> None:
    await store.append_turn("a", "main", "r1", [user("1"), assistant("1")], "complete")
    await trio.sleep(0.002)  # distinct updated_at_ms
    await store.append_turn("b", "other", "r2", [user("2")], "complete")
    await trio.sleep(0.002)
    await store.append_turn("c", "main", "r3", [user("3")], "complete")

    listed = await store.list_sessions(None, 10)
    assert [(s.key, s.agent_id, s.message_count) for s in listed] == [
        ("c", "main", 1),
        ("b", "other", 1),
        ("a", "main", 2),
    ]
    assert [s.key for s in await store.list_sessions("main", 10)] == ["c", "a"]
    assert [s.key for s in await store.list_sessions(None, 1)] == ["c"]
    assert listed[0].created_at_ms <= listed[0].updated_at_ms

    assert await store.reset("a") is True
    assert await store.reset("nope") is False
    page = await store.history("a", 10, None)
    assert page is not None and list(page.entries) == []
    assert await store.context("a", None) == []
    newest = (await store.list_sessions(None, 10))[0]
    assert (newest.key, newest.message_count) == ("a", 0)
    await store.append_turn("a", "main", "r4", [user("again")], "complete")
    assert await store.context("a", None) == [user("again")]

    assert await store.delete("b") is True
    assert await store.delete("b") is False
    assert await store.history("b", 10, None) is None
    assert {s.key for s in await store.list_sessions(None, 10)} == {"a", "c"}


async def test_keys_are_isolated(store: TranscriptStore) -> None:
    await store.append_turn("k1", "main", "r1", [user("for k1")], "complete")
    await store.append_turn("k2", "main", "r2", [user("for k2")], "complete")
    assert await store.context("k1", None) == [user("for k1")]
    assert await store.context("k2", None) == [user("for k2")]
    assert await store.context("k3", None) == []
    await store.delete("k1")
    assert await store.context("k2", None) == [user("for k2")]


async def test_append_validates_and_ignores_empty_turns(store: TranscriptStore) -> None:
    with pytest.raises(ValueError):
        await store.append_turn("k", "main", "r", [user("x")], "done")  # type: ignore[arg-type]
    await store.append_turn("k", "main", "r", [], "complete")
    assert await store.history("k", 10, None) is None


async def test_concurrent_appends_commit_together_in_order(store: TranscriptStore) -> None:

    async def append(n: int) -> None:
        await store.append_turn("k", "main", f"r{n}", [user(str(n)), assistant(str(n))], "complete")

    async with trio.open_nursery() as nursery:
        for n in range(40):
            nursery.start_soon(append, n)
    page = await store.history("k", 100, None)
    assert page is not None
    assert [entry.seq for entry in page.entries] == list(range(1, 81))
    # Each turn's two messages are adjacent whatever order the turns committed in.
    runs = [entry.run_id for entry in page.entries]
    assert all(runs[i] == runs[i + 1] for i in range(0, 80, 2))
    assert len(set(runs)) == 40


async def test_recent_reads_the_newest_messages(store: TranscriptStore) -> None:
    assert await store.recent("nobody", 5) is None
    for i in range(7):
        await store.append_turn(
            "k", "main", f"r{i}", [{"role": "user", "content": f"m{i}"}], "complete"
        )
    recent = await store.recent("k", 3)
    assert recent is not None
    assert [e.message["content"] for e in recent.entries] == ["m4", "m5", "m6"]
    assert recent.total == 7


async def test_counts_and_list_limits(store: TranscriptStore) -> None:
    assert await store.count_sessions(None) == 0
    await store.append_turn("a", "main", "r1", [user("1")], "complete")
    await store.append_turn("b", "other", "r2", [user("2")], "complete")
    await store.append_turn("c", "main", "r3", [user("3")], "complete")
    assert await store.count_sessions(None) == 3
    assert await store.count_sessions("main") == 2
    assert await store.count_sessions("nobody") == 0
    assert await store.list_sessions(None, 0) == []
    assert await store.list_sessions(None, -5) == []
    await store.reset("a")  # a reset session still counts
    assert await store.count_sessions("main") == 2
    await store.delete("a")
    assert await store.count_sessions(None) == 2
    assert await store.ping() is True


async def test_reset_restarts_the_numbering_and_recent_counts(store: TranscriptStore) -> None:
    await store.append_turn("k", "main", "r1", [user("q"), assistant("a")], "complete")
    first = await store.list_sessions(None, 1)
    assert await store.reset("k") is True
    recent = await store.recent("k", 5)
    assert recent is not None and list(recent.entries) == [] and recent.total == 0
    [after] = await store.list_sessions(None, 1)
    assert after.created_at_ms == first[0].created_at_ms
    assert after.updated_at_ms >= first[0].updated_at_ms
    await store.append_turn("k", "other", "r2", [user("again")], "complete")
    page = await store.history("k", 10, None)
    assert page is not None and [e.seq for e in page.entries] == [1]
    # The session keeps its first agent.
    assert [s.agent_id for s in await store.list_sessions(None, 10)] == ["main"]


async def test_another_store_sees_committed_turns(backend: Backend) -> None:
    """What one process (or host) appended, another reads at once, and after reopening."""
    async with backend.open_transcripts() as first, backend.open_transcripts() as second:
        await first.append_turn(
            "k", "main", "r1", [user("kept"), assistant("yes")], "complete", USAGE
        )
        assert await second.context("k", None) == [user("kept"), assistant("yes")]
        await second.append_turn("k", "main", "r2", [user("more")], "complete")
    async with backend.open_transcripts() as third:
        page = await third.history("k", 10, None)
        assert page is not None
        assert [e.seq for e in page.entries] == [1, 2, 3]
        assert page.entries[1].usage == USAGE


async def test_channels_round_trip(store: TranscriptStore) -> None:
    turn = [user("from slack"), assistant("ok")]
    await store.append_turn("k", "main", "r1", turn, "complete", channel="slack:C024BE91L")
    await store.append_turn("k", "main", "r2", [user("no channel")], "complete")
    await store.append_turn("k", "main", "r3", [user("cut")], "aborted", None, "webchat")
    page = await store.history("k", 10, None)
    assert page is not None
    assert [e.channel for e in page.entries] == ["slack:C024BE91L"] * 2 + [None, "webchat"]
    recent = await store.recent("k", 1)
    assert recent is not None and recent.entries[0].channel == "webchat"
    # The channel is the turn's, not the model's business.
    assert await store.context("k", None) == [
        user("from slack"), assistant("ok"), user("no channel"), user("cut"),
    ]  # fmt: skip


async def test_a_page_says_where_the_transcript_ends(store: TranscriptStore) -> None:
    for n in range(3):
        await store.append_turn("k", "main", f"r{n}", [user(f"q{n}"), assistant("a")], "complete")
    first = await store.history("k", 2, None)
    assert first is not None and first.next_cursor is not None
    assert first.end == TranscriptMark(6, "r2")  # the transcript's end, not the page's
    await store.reset("k")
    empty = await store.history("k", 2, None)
    assert empty is not None and empty.end == START


async def test_followers_get_each_append_once_in_order(store: TranscriptStore) -> None:
    await store.append_turn("k", "main", "r0", [user("before")], "complete")
    page = await store.history("k", 10, None)
    assert page is not None
    # What is there already comes at once, at most ``limit`` at a time.
    await store.append_turn("k", "main", "r1", [user("u1"), assistant("a1")], "complete")
    found = await store.wait_appended("k", page.end, 1)
    assert found is not None and [e.message["content"] for e in found] == ["u1"]
    found = await store.wait_appended("k", found[-1].mark, 10)
    assert found is not None and [e.message["content"] for e in found] == ["a1"]
    mark = found[-1].mark
    seen: list[str] = []

    async def follow(after: TranscriptMark) -> None:
        while len(seen) < 6:
            got = await store.wait_appended("k", after, 100)
            assert got is not None
            seen.extend(str(e.message["content"]) for e in got)
            after = got[-1].mark

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, mark)
            for n in range(2, 5):
                await trio.testing.wait_all_tasks_blocked()
                turn = [user(f"u{n}"), assistant(f"a{n}")]
                await store.append_turn("k", "main", f"r{n}", turn, "complete", channel="c")
    assert seen == ["u2", "a2", "u3", "a3", "u4", "a4"]

    # Nothing new: the caller's deadline ends the wait.
    with trio.move_on_after(0.05) as quiet:
        await store.wait_appended("k", TranscriptMark(9, "r4"), 10)
    assert quiet.cancelled_caught


async def test_a_reset_or_delete_ends_following(store: TranscriptStore) -> None:
    await store.append_turn("k", "main", "r1", [user("q"), assistant("a")], "complete")
    assert await store.wait_appended("missing", START, 10) is None
    # A mark the transcript no longer holds (another run at that seq): reset since.
    assert await store.wait_appended("k", TranscriptMark(2, "other"), 10) is None
    ended: list[object] = []

    async def follow() -> None:
        ended.append(await store.wait_appended("k", TranscriptMark(2, "r1"), 10))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await trio.testing.wait_all_tasks_blocked()
            await store.reset("k")
            # Even once the new transcript has grown past the follower's mark.
            three = [user("1"), user("2"), user("3")]
            await store.append_turn("k", "main", "r2", three, "complete")
    assert ended == [None]
    assert await store.wait_appended("k", TranscriptMark(2, "r1"), 10) is None
    found = await store.wait_appended("k", START, 10)
    assert found is not None and len(found) == 3
    await store.delete("k")
    assert await store.wait_appended("k", START, 10) is None


async def test_another_store_wakes_followers(backend: Backend) -> None:
    """An append through another store object (another process or host) reaches a follower
    (through the store's poll here: no notifications between these two objects)."""
    async with backend.open_transcripts() as first, backend.open_transcripts() as second:
        await first.append_turn("k", "main", "r1", [user("one")], "complete")
        got: list[str] = []

        async def follow() -> None:
            found = await first.wait_appended("k", TranscriptMark(1, "r1"), 10)
            assert found is not None
            got.extend(str(e.message["content"]) for e in found)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                await trio.testing.wait_all_tasks_blocked()
                await second.append_turn("k", "main", "r2", [user("two")], "complete")
        assert got == ["two"]
