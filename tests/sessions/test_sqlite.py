"""What only the SQLite transcript store does: its file (created with its directory, WAL, kept
across reopening), several processes creating it at once, a newer schema refused. The shared
contract is ``test_transcript_store``'s; durability across SIGKILL is ``test_processes``'."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import trio

from gateway.sessions.sqlite import SQLiteTranscripts
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
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


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
