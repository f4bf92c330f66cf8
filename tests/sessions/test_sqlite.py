"""What only the SQLite transcript store does: its file (created with its directory, WAL, kept
across reopening), several processes creating it at once, an older file upgraded in place (by
one of several at once), a newer schema refused, other processes' appends reaching followers.
The shared contract is ``test_transcript_store``'s; durability across SIGKILL is
``test_processes``'."""

from __future__ import annotations

import sqlite3
import threading
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from gateway.sessions._transcripts import VERSION
from gateway.sessions.base import START, TranscriptMark
from gateway.sessions.sqlite import POLL_SECONDS, SQLiteTranscripts
from gateway.types import ChatMessage, UsageDict

USAGE: UsageDict = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def user(text: str) -> ChatMessage:
    return {"role": "user", "content": text}


def assistant(text: str) -> ChatMessage:
    return {"role": "assistant", "content": text}


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    first = SQLiteTranscripts(tmp_path)
    await first.append_turn("k", "main", "r1", [user("kept"), assistant("yes")], "complete", USAGE)
    await first.aclose()
    assert (tmp_path / "sessions.sqlite3").exists()

    second = SQLiteTranscripts(tmp_path)
    try:
        assert await second.context("k", None) == [user("kept"), assistant("yes")]
        page = await second.history("k", 10, None)
        assert page is not None and page.entries[-1].usage == USAGE
    finally:
        await second.aclose()
    with pytest.raises(RuntimeError):
        await second.context("k", None)


async def test_creates_the_directory_and_uses_wal(tmp_path: Path) -> None:
    directory = tmp_path / "state" / "gateway"
    store = SQLiteTranscripts(directory)
    await store.open()
    await store.aclose()
    with sqlite3.connect(directory / "sessions.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(VERSION,)]


async def test_many_stores_open_one_new_file_at_once(tmp_path: Path) -> None:
    stores = [SQLiteTranscripts(tmp_path) for _ in range(6)]
    async with trio.open_nursery() as nursery:
        for n, store in enumerate(stores):
            nursery.start_soon(store.append_turn, "k", "main", f"r{n}", [user(str(n))], "complete")
    assert sorted(m["content"] for m in await stores[0].context("k", None)) == [  # type: ignore[type-var]
        str(n) for n in range(6)
    ]
    for store in stores:
        await store.aclose()
    with sqlite3.connect(tmp_path / "sessions.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM schema_version").fetchone() == (1,)


def db_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("sqlite ")}


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    store = SQLiteTranscripts(tmp_path)
    await store.open()
    await store.aclose()
    with sqlite3.connect(tmp_path / "sessions.sqlite3") as db:
        db.execute("UPDATE schema_version SET version = 99")
    threads_before = db_threads()
    newer = SQLiteTranscripts(tmp_path)
    for _ in range(2):  # a failed open leaves nothing running and can be tried again
        with pytest.raises(RuntimeError, match="newer"):
            await newer.open()
    await newer.aclose()
    assert db_threads() <= threads_before


# The tables of schema version 1, as the first released gateway made them.
V1_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (1)",
    "CREATE TABLE sessions (key TEXT PRIMARY KEY, agent_id TEXT NOT NULL,"
    " created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL)",
    "CREATE INDEX sessions_by_update ON sessions (updated_at_ms)",
    "CREATE INDEX sessions_by_agent ON sessions (agent_id, updated_at_ms)",
    "CREATE TABLE messages (session_key TEXT NOT NULL, seq INTEGER NOT NULL,"
    " role TEXT NOT NULL, content TEXT, name TEXT, tool_calls TEXT, tool_call_id TEXT,"
    " run_id TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('complete', 'aborted', 'error')),"
    " usage TEXT, created_at_ms INTEGER NOT NULL, PRIMARY KEY (session_key, seq)) WITHOUT ROWID",
    "INSERT INTO sessions VALUES ('old', 'main', 1000, 2000)",
    "INSERT INTO messages VALUES ('old', 1, 'user', '\"before\"', NULL, NULL, NULL, 'r0',"
    " 'complete', NULL, 1000)",
    "INSERT INTO messages VALUES ('old', 2, 'assistant', '\"kept\"', NULL, NULL, NULL, 'r0',"
    ' \'complete\', \'{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}\', 2000)',
)


def write_v1_file(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(directory / "sessions.sqlite3") as db:
        db.execute("PRAGMA journal_mode = WAL")
        for statement in V1_SCHEMA:
            db.execute(statement)
    db.close()


async def test_a_version_1_file_is_upgraded_in_place_by_one_of_many(tmp_path: Path) -> None:
    write_v1_file(tmp_path)
    stores = [SQLiteTranscripts(tmp_path) for _ in range(6)]
    try:
        # Six processes' stores open the old file at once: one upgrades it, all then write.
        async with trio.open_nursery() as nursery:
            for n, store in enumerate(stores):
                nursery.start_soon(
                    partial(
                        store.append_turn, "old", "main", f"r{n + 1}", [user(f"u{n}")],
                        "complete", channel=f"ch{n}",
                    )
                )  # fmt: skip
        page = await stores[0].history("old", 20, None)
        assert page is not None
        assert [e.message["content"] for e in page.entries[:2]] == ["before", "kept"]
        assert page.entries[1].usage == {
            "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2,
        }  # fmt: skip
        assert [e.channel for e in page.entries[:2]] == [None, None]
        assert sorted(e.channel or "" for e in page.entries[2:]) == [f"ch{n}" for n in range(6)]
        assert [e.seq for e in page.entries] == list(range(1, 9))
    finally:
        for store in stores:
            await store.aclose()
    with sqlite3.connect(tmp_path / "sessions.sqlite3") as db:
        versions = db.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(v,) for v in range(1, VERSION + 1)]
        columns = [row[1] for row in db.execute("PRAGMA table_info(messages)")]
        assert columns[-1] == "channel"
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


async def test_followers_see_another_process_append_within_the_poll(tmp_path: Path) -> None:
    """Another store on the same file stands for another process: its append reaches this
    store's follower through the poll, within ``POLL_SECONDS`` (plus a read)."""
    follower, writer = SQLiteTranscripts(tmp_path), SQLiteTranscripts(tmp_path)
    try:
        await writer.append_turn("k", "main", "r1", [user("first")], "complete")
        page = await follower.history("k", 10, None)
        assert page is not None and page.end.seq == 1
        got: list[list[str]] = []

        async def follow() -> None:
            found = await follower.wait_appended("k", page.end, 10)
            assert found is not None
            got.append([str(e.message["content"]) for e in found])

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow)
                await trio.testing.wait_all_tasks_blocked()
                assert follower.follow.statistics().waiters == 1
                appended_at = trio.current_time()
                turn = [user("second"), assistant("reply")]
                await writer.append_turn("k", "main", "r2", turn, "complete")
        assert got == [["second", "reply"]]
        assert trio.current_time() - appended_at < POLL_SECONDS + 0.5
        assert follower.follow.statistics().waiters == 0

        # A reset seen by the poll ends a follower that was past the new end.
        ends: list[object] = []

        async def follow_to_the_end(mark: TranscriptMark) -> None:
            ends.append(await follower.wait_appended("k", mark, 10))

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                last = await follower.history("k", 10, None)
                assert last is not None
                nursery.start_soon(follow_to_the_end, last.end)
                await trio.testing.wait_all_tasks_blocked()
                await writer.reset("k")
        assert ends == [None]
        assert await follower.wait_appended("missing", START, 10) is None
    finally:
        await follower.aclose()
        await writer.aclose()
