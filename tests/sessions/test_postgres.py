"""What only the PostgreSQL stores do: versioned migrations raced by several hosts (from an
empty database and from version 1), a newer schema refused, several hosts writing one session,
and a password that never shows, whether the server is down or refuses it. The shared
contract is ``test_transcript_store``'s and ``test_response_store``'s."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from functools import partial
from typing import Any, cast
from urllib.parse import quote

import pytest
import trio

from gateway.sessions.postgres import _transcripts_sql as sql
from gateway.sessions.postgres._sql import Connection
from gateway.sessions.postgres.connection import PgDatabase, StoreUnavailable
from gateway.sessions.postgres.schema import LATEST, MIGRATIONS, SchemaTooNew, migrate
from gateway.sessions.postgres.transcripts import PgTranscripts
from gateway.types import ChatMessage
from tests.postgres import PASSWORD, Cluster, throwaway_cluster

TABLES = (
    "gateway_events gateway_hosts gateway_messages gateway_response_items gateway_responses"
    " gateway_schema gateway_sessions gateway_tickets"
)


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def turn(n: int) -> list[ChatMessage]:
    return [{"role": "user", "content": f"q{n}"}, {"role": "assistant", "content": f"a{n}"}]


async def test_six_hosts_migrate_an_empty_database_at_once(postgres: Cluster, pg_url: str) -> None:
    databases = [PgDatabase(pg_url, size=1, name=f"host {n}") for n in range(6)]
    versions: list[int] = []

    async def start(db: PgDatabase) -> None:
        versions.append(await migrate(db))

    try:
        async with trio.open_nursery() as nursery:
            for db in databases:
                nursery.start_soon(start, db)
        assert versions == [LATEST] * 6
        assert await migrate(databases[0]) == LATEST  # an up-to-date database: nothing to do
    finally:
        for db in databases:
            await db.aclose()
    name = database_of(pg_url)
    assert postgres.sql(name, "SELECT count(*) FROM gateway_schema") == str(LATEST)
    tables = postgres.sql(
        name,
        "SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables"
        " WHERE tablename LIKE 'gateway%'",
    )
    assert tables == TABLES


async def test_a_newer_schema_is_refused(postgres: Cluster, pg_url: str) -> None:
    db = PgDatabase(pg_url, size=1)
    try:
        await migrate(db)
        postgres.sql(
            database_of(pg_url),
            f"INSERT INTO gateway_schema (version, applied_at_ms) VALUES ({LATEST + 98}, 0)",
        )
        with pytest.raises(SchemaTooNew) as refused:
            await migrate(db)
        message = str(refused.value)
        assert f"version {LATEST + 98}" in message and f"up to version {LATEST}" in message
        assert "***" in message and quote(PASSWORD, safe="") not in message
        # A store on it refuses too, and is not ready.
        store = PgTranscripts(db)
        with pytest.raises(SchemaTooNew):
            await store.context("k", None)
        assert await store.ping() is False
    finally:
        await db.aclose()
    # Nothing was applied on top of the newer schema.
    assert postgres.sql(database_of(pg_url), "SELECT count(*) FROM gateway_schema") == str(
        LATEST + 1
    )


def make_version_1(db: Connection) -> None:
    """A database as the first released gateway left it, with one stored turn."""
    db.execute(
        "CREATE TABLE gateway_schema (version INTEGER PRIMARY KEY, applied_at_ms BIGINT NOT NULL)"
    )
    version, statements = MIGRATIONS[0]
    assert version == 1
    for statement in statements:
        db.execute(statement)
    db.execute("INSERT INTO gateway_schema VALUES (1, 0)")
    db.execute("INSERT INTO gateway_sessions VALUES ('old', 'main', 1000, 2000)")
    db.execute(
        "INSERT INTO gateway_messages (session_key, seq, role, content, run_id, status,"
        " created_at_ms) VALUES ('old', 1, 'user', '\"kept\"', 'r0', 'complete', 1000)"
    )


async def test_version_1_is_upgraded_in_place_by_one_of_several_hosts(
    postgres: Cluster, pg_url: str
) -> None:
    hosts = [PgDatabase(pg_url, size=2, name=f"host {n}") for n in range(3)]
    try:
        await hosts[0].run(make_version_1)
        versions: list[int] = []

        async def start(db: PgDatabase) -> None:
            versions.append(await migrate(db))

        async with trio.open_nursery() as nursery:
            for db in hosts:
                nursery.start_soon(start, db)
        assert versions == [LATEST] * 3
        store = PgTranscripts(hosts[1])
        await store.append_turn("old", "main", "r1", turn(1), "complete", channel="webchat")
        page = await store.history("old", 10, None)
        assert page is not None
        assert [(e.seq, e.message["content"], e.channel) for e in page.entries] == [
            (1, "kept", None), (2, "q1", "webchat"), (3, "a1", "webchat"),
        ]  # fmt: skip
    finally:
        for db in hosts:
            await db.aclose()
    name = database_of(pg_url)
    applied = postgres.sql(
        name, "SELECT string_agg(version::text, ' ' ORDER BY version) FROM gateway_schema"
    )
    assert applied == " ".join(str(v) for v in range(1, LATEST + 1))


async def test_two_hosts_append_to_one_session(pg_url: str) -> None:
    hosts = [PgDatabase(pg_url, size=4, name=f"host {n}") for n in range(2)]
    stores = [PgTranscripts(db) for db in hosts]
    try:
        async with trio.open_nursery() as nursery:
            for n in range(60):
                store = stores[n % 2]
                nursery.start_soon(store.append_turn, "k", "main", f"r{n}", turn(n), "complete")
        for store in stores:
            page = await store.history("k", 200, None)
            assert page is not None
            assert [entry.seq for entry in page.entries] == list(range(1, 121))
            runs = [entry.run_id for entry in page.entries]
            assert all(runs[i] == runs[i + 1] for i in range(0, 120, 2))  # turns stay whole
            assert len(set(runs)) == 60
    finally:
        for db in hosts:
            await db.aclose()


async def test_resets_and_deletes_from_another_host_leave_whole_turns(pg_url: str) -> None:
    hosts = [PgDatabase(pg_url, size=3, name=f"host {n}") for n in range(2)]
    writer, other = (PgTranscripts(db) for db in hosts)
    try:
        async with trio.open_nursery() as nursery:
            for n in range(40):
                nursery.start_soon(writer.append_turn, "k", "main", f"r{n}", turn(n), "complete")
                if n % 10 == 5:
                    nursery.start_soon(other.reset, "k")
                if n % 10 == 9:
                    nursery.start_soon(other.delete, "k")
        await writer.append_turn("k", "main", "last", turn(99), "complete")
        page = await other.history("k", 200, None)
        assert page is not None
        seqs = [entry.seq for entry in page.entries]
        assert seqs == list(range(1, len(seqs) + 1))  # numbered from 1, no gap
        runs = [entry.run_id for entry in page.entries]
        assert len(runs) % 2 == 0 and all(runs[i] == runs[i + 1] for i in range(0, len(runs), 2))
        assert runs[-1] == "last"
    finally:
        for db in hosts:
            await db.aclose()


class _PausedAfterFirst:
    """A connection whose first statement is followed by a pause until ``resume`` is set."""

    def __init__(self, db: Connection, paused: threading.Event, resume: threading.Event) -> None:
        self._db, self._paused, self._resume, self._first = db, paused, resume, True

    def execute(self, *args: Any) -> Any:
        result = self._db.execute(*args)
        if self._first:
            self._first = False
            self._paused.set()
            assert self._resume.wait(10)
        return result


async def test_a_reset_that_found_no_session_deletes_no_later_turn(pg_url: str) -> None:
    """A reset whose snapshot predates the session's creation is ordered before it: it must
    not delete the first turn, committed meanwhile, and leave the turn after it."""
    db = PgDatabase(pg_url, size=3)
    events = {
        name: threading.Event() for name in ["inserted", "updated", "appended", "go1", "go2", "go3"]
    }

    def hold(name: str, then: str, fn: Callable[[Connection], object]) -> Callable[..., None]:
        def job(connection: Connection) -> None:
            fn(connection)
            events[name].set()
            assert events[then].wait(10)  # committed when the job returns

        return job

    async def wait(name: str) -> None:
        assert await trio.to_thread.run_sync(events[name].wait, 10)

    def reset(connection: Connection) -> None:
        sql.reset(
            "k", cast(Connection, _PausedAfterFirst(connection, events["updated"], events["go2"]))
        )

    def append(n: int) -> Callable[[Connection], None]:
        return partial(sql.append, "k", "main", f"r{n}", turn(n), "complete", None, None)

    reset_done = trio.Event()

    async def run_reset() -> None:
        await db.run(reset)
        reset_done.set()

    try:
        await migrate(db)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.run, hold("inserted", "go1", append(1)))
            await wait("inserted")  # the session and turn 1, not yet committed
            nursery.start_soon(run_reset)
            await wait("updated")  # the reset's snapshot had no session
            events["go1"].set()  # turn 1 commits
            nursery.start_soon(db.run, hold("appended", "go3", append(2)))
            await wait("appended")  # turn 2 holds the session's row, not yet committed
            events["go2"].set()  # the reset goes on and commits
            await reset_done.wait()
            events["go3"].set()
        page = await PgTranscripts(db).history("k", 10, None)
        assert page is not None
        assert [(entry.seq, entry.run_id) for entry in page.entries] == [
            (1, "r1"), (2, "r1"), (3, "r2"), (4, "r2"),
        ]  # fmt: skip
    finally:
        for event in events.values():
            event.set()
        await db.aclose()


async def test_the_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng/p@ss:word"
    secrets = {PASSWORD, quote(PASSWORD, safe=""), wrong, quote(wrong, safe="")}
    shown: list[str] = []

    def show(error: BaseException) -> None:
        shown.extend(traceback.format_exception(error))
        if isinstance(error, StoreUnavailable):
            shown.append(error.detail)

    with throwaway_cluster() as cluster:
        url = cluster.database()
        refused_db = PgDatabase(cluster.url(database_of(url), password=wrong), size=1)
        down_db = PgDatabase(url, size=1)
        try:
            refused = PgTranscripts(refused_db)
            with pytest.raises(StoreUnavailable) as raised:
                await refused.append_turn("k", "main", "r", turn(0), "complete")
            show(raised.value)
            assert "password authentication failed" in raised.value.detail
            assert await refused.ping() is False
            shown.append(refused.location)

            cluster.stop()
            down = PgTranscripts(down_db)
            with pytest.raises(StoreUnavailable) as raised:
                await migrate(down_db)
            show(raised.value)
            with pytest.raises(StoreUnavailable) as raised:
                await down.history("k", 10, None)
            show(raised.value)
            assert await down.ping() is False
            shown.append(down.location)

            cluster.start()  # the server is back: the same store works again
            assert await down.ping() is True
            await down.append_turn("k", "main", "r", turn(1), "complete")
        finally:
            await refused_db.aclose()
            await down_db.aclose()
    shown.extend(record.getMessage() for record in caplog.records)
    assert any("database unavailable" in line for line in shown)  # the outages were logged
    assert "gateway:***@127.0.0.1" in down.location
    leaks = [line for line in shown if any(secret in line for secret in secrets)]
    assert leaks == []
