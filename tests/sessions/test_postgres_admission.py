"""What only PostgreSQL admission promises (the shared promises are in
``test_admission_contract``): a host that vanishes, or is cut off from the database, stops
blocking the others within a bounded time; a host whose listener connection breaks and comes
straight back keeps its lanes; with the database unavailable, a stateful run is refused at once
while a stateless one is admitted by the host's own cap. Two ``PgStore``s in one trio run stand
for two hosts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import trio

from gateway.sessions.admission import AdmissionStatistics
from gateway.sessions.postgres.connection import StoreUnavailable
from gateway.sessions.postgres.host import DEAD_AFTER, NAMESPACE
from gateway.sessions.postgres.store import PgStore
from tests.postgres import Cluster, throwaway_cluster

from .admissions import Relay, Runs, admitted, finished, idle, pg_hosts
from .conftest import wait_until

# How long after DEAD_AFTER the others may take to reclaim a dead host's tickets (their poll
# interval, a transaction or two), with room for a loaded machine.
RECLAIM_SLACK = 3.0
PROMPT = 1.0


def _query(url: str, statement: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as connection:
        return connection.execute(statement, params).fetchall()


async def query(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """``statement`` on an administrator's connection of its own."""
    return await trio.to_thread.run_sync(_query, url, statement, params)


async def listener_pid(url: str, store: PgStore) -> int | None:
    """The server process of the session holding ``store``'s presence lock."""
    rows = await query(
        url,
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s AND objid = %s"
        " AND objsubid = 2 AND granted",
        NAMESPACE,
        store.host.lock_key,
    )
    return rows[0][0] if rows else None


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """A cluster of this test's own (it is stopped and started)."""
    with throwaway_cluster() as cluster:
        yield cluster


async def test_a_host_that_vanishes_stops_blocking_the_others(pg_url: str) -> None:
    async with pg_hosts(pg_url) as open_host, trio.open_nursery() as nursery:
        a, b = await open_host(1), await open_host(1)
        runs = Runs(nursery, 1)
        holder = await runs.start("holder", a.admission, "k")  # k's lane and the one slot
        waiter = await runs.start("waiter", b.admission, "k")
        # Host A stops without releasing anything: its connections close (its presence lock
        # goes with them) and its run goes with it; its tickets stay behind.
        began = trio.current_time()
        await a.aclose()
        holder.release.set()
        await finished(holder)
        await admitted(waiter, DEAD_AFTER + RECLAIM_SLACK + 1)
        waiter.release.set()
    reclaimed = waiter.entered_at - began
    assert DEAD_AFTER <= reclaimed < DEAD_AFTER + RECLAIM_SLACK, reclaimed
    assert runs.order == ["holder", "waiter"]
    assert b.admission.statistics() == idle(1)


async def test_a_host_cut_off_is_reclaimed_and_gives_up_its_runs_on_return(
    postgres: Cluster, pg_url: str
) -> None:
    async with trio.open_nursery() as network:
        relay = Relay(postgres.port)
        port = await network.start(relay.serve)
        through_relay = pg_url.replace(f":{postgres.port}/", f":{port}/")
        async with (
            pg_hosts(through_relay) as open_a,
            pg_hosts(pg_url) as open_b,
            trio.open_nursery() as nursery,
        ):
            a, b = await open_a(2), await open_b(2)
            # Host A goes on running what it had while cut off: two runs on one key for a while.
            runs = Runs(nursery, 2, exclusive=False)
            holder = await runs.start("holder", a.admission, "k")
            j_holder = await runs.start("j-holder", b.admission, "j")
            waiter = await runs.start("waiter", b.admission, "k")
            lost = await runs.start("lost", a.admission, "j")  # queued behind j-holder
            relay.cut()
            reclaimed = await admitted(waiter, DEAD_AFTER + RECLAIM_SLACK + 1)
            assert DEAD_AFTER <= reclaimed < DEAD_AFTER + RECLAIM_SLACK, reclaimed
            assert not holder.killed  # A cannot know yet
            healed = trio.current_time()
            relay.heal()
            # Back, host A finds its tickets gone: it aborts the run it held, and the one that
            # waited (its place in the queue is lost) instead of leaving it waiting for good.
            await finished(holder)
            await finished(lost)
            assert holder.killed and lost.killed and not lost.entered.is_set()
            assert max(holder.killed_at, lost.killed_at) - healed < 1.0 + RECLAIM_SLACK
            j_holder.release.set()
            waiter.release.set()
            await finished(j_holder)
            await finished(waiter)
            assert (a.admission.statistics(), b.admission.statistics()) == (idle(2), idle(2))
        network.cancel_scope.cancel()
    assert runs.order == ["holder", "j-holder", "waiter"]


async def test_a_listener_that_reconnects_at_once_keeps_its_lanes(pg_url: str) -> None:
    async with pg_hosts(pg_url) as open_host, trio.open_nursery() as nursery:
        a, b = await open_host(1), await open_host(1)
        runs = Runs(nursery, 1)
        holder = await runs.start("holder", a.admission, "k")
        waiter = await runs.start("waiter", b.admission, "k")
        old = await listener_pid(pg_url, a)
        assert old is not None
        await query(pg_url, "SELECT pg_terminate_backend(%s)", old)

        async def back() -> bool:
            # A new session holds the lock, and then (``up``) listens: a kill must not be
            # notified in between, when nobody would hear it.
            return await listener_pid(pg_url, a) not in (None, old) and a.host.up

        await wait_until(back)
        # Still the holder (nothing was lost), and reachable on its new listener connection.
        assert not holder.killed and not waiter.entered.is_set()
        asked = trio.current_time()
        assert await b.admission.request_kill("k") is True
        await finished(holder)
        assert holder.killed_at - asked < PROMPT, holder.killed_at - asked
        await admitted(waiter)
        waiter.release.set()
    assert runs.order == ["holder", "waiter"]


async def test_database_unavailable_refuses_stateful_runs_and_admits_stateless_ones(
    own_cluster: Cluster,
) -> None:
    async with pg_hosts(own_cluster.database()) as open_host, trio.open_nursery() as nursery:
        admission = (await open_host(1)).admission
        runs = Runs(nursery, 1)
        await trio.to_thread.run_sync(own_cluster.stop, "immediate")
        began = trio.current_time()
        with pytest.raises(StoreUnavailable):
            async with admission.admit("k", lambda: None):
                pytest.fail("a stateful run admitted without its lane")
        refused = trio.current_time() - began
        assert refused < PROMPT, refused
        assert await admission.ping() is False
        # Stateless runs need no lane: this host's own cap admits them, FIFO, and a waiter
        # that is cancelled leaves that queue too.
        first = await runs.start("first", admission, None)
        assert first.entered.is_set()
        leaver = await runs.start("leaver", admission, None)
        assert admission.statistics() == AdmissionStatistics(1, 0, 0, 1, 1, ())
        leaver.scope.cancel()
        await finished(leaver)
        assert admission.statistics() == AdmissionStatistics(1, 0, 0, 1, 0, ())
        second = await runs.start("second", admission, None)
        assert not second.entered.is_set()
        first.release.set()
        await admitted(second)
        second.release.set()
        await finished(second)
        assert admission.statistics() == idle(1)
        # The database is back: so are the lanes, without a restart.
        await trio.to_thread.run_sync(own_cluster.start)
        await wait_until(admission.ping)
        keyed = await runs.start("keyed", admission, "k")
        assert keyed.entered.is_set()
        keyed.release.set()
    assert runs.order == ["first", "second", "keyed"]


async def test_a_kill_the_holder_did_not_hear_is_found_when_it_reconnects(pg_url: str) -> None:
    async with pg_hosts(pg_url) as open_host, trio.open_nursery() as nursery:
        a, b = await open_host(2), await open_host(2)
        runs = Runs(nursery, 2)
        holder = await runs.start("holder", b.admission, "k")
        await admitted(holder)
        # Host B misses the notification, as while its listener reconnects...
        b.admission.notified = lambda channel, payload: None  # type: ignore[method-assign]
        assert await a.admission.request_kill("k")
        assert not holder.killed
        # ... and finds the kill on the ticket when it checks them after reconnecting.
        b.admission.reconnected()
        await finished(holder, PROMPT)
        assert holder.killed
