"""The hub: followers, publishing, in-flight runs and the bounded answer cache."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from gateway.ws.hub import MAX_SUBSCRIPTIONS_PER_PEER, FinishedRun, Hub, RunTicket
from gateway.ws.outbox import Outbox
from gateway.ws.run_events import FinalAnswer, OutEvent, RunTranslator


@dataclass(eq=False)
class FakePeer:
    conn_id: str
    outbox: Outbox = field(default_factory=lambda: Outbox(100, 1 << 20))

    def received(self) -> list[str]:
        out = []
        while self.outbox.statistics().queued:
            item = self.outbox._items.popleft()
            out.append(json.loads(str(item))["payload"]["runId"])
        return out


def ticket(run_id: str, key: str, origin: FakePeer | None) -> RunTicket:
    return RunTicket(RunTranslator(run_id, key, "main", lambda: 0), origin)


EVENT = [OutEvent("chat", {"runId": "r"})]


def test_publish_reaches_origin_and_followers_once() -> None:
    hub = Hub()
    origin, follower, stranger = FakePeer("o"), FakePeer("f"), FakePeer("s")
    for peer in (origin, follower, stranger):
        hub.attach(peer)
    hub.follow(follower, "k")
    hub.follow(origin, "k")  # origin and follower: still one copy
    hub.publish(ticket("r", "k", origin), EVENT)
    assert origin.received() == ["r"]
    assert follower.received() == ["r"]
    assert stranger.received() == []


def test_detached_peers_get_nothing() -> None:
    hub = Hub()
    origin, follower = FakePeer("o"), FakePeer("f")
    hub.attach(origin)
    hub.attach(follower)
    hub.follow(follower, "k")
    hub.detach(follower)
    hub.detach(origin)
    hub.detach(origin)  # idempotent
    hub.publish(ticket("r", "k", origin), EVENT)
    assert origin.received() == [] and follower.received() == []
    hub.follow(follower, "k")  # not attached: ignored
    assert hub._followers == {}


def test_subscriptions_are_bounded_per_peer() -> None:
    hub = Hub()
    peer = FakePeer("p")
    hub.attach(peer)
    for i in range(MAX_SUBSCRIPTIONS_PER_PEER + 5):
        hub.follow(peer, f"k{i}")
    assert len(hub._following[peer]) == MAX_SUBSCRIPTIONS_PER_PEER
    assert "k0" not in hub._followers
    assert f"k{MAX_SUBSCRIPTIONS_PER_PEER + 4}" in hub._followers


def test_runs_in_flight_then_cached_with_a_bound() -> None:
    hub = Hub(max_cached_runs=2)
    first = ticket("a", "k", None)
    hub.begin(first)
    assert hub.lookup("a") is first
    assert hub.in_flight(session_key="k") == [first]
    assert hub.in_flight(session_key="other") == []
    try:
        hub.begin(ticket("a", "k", None))
    except ValueError:
        pass
    else:
        raise AssertionError("a second run with the same id must be refused")
    hub.finish(first, FinalAnswer({"runId": "a"}))
    assert first.done.is_set()
    cached = hub.lookup("a")
    assert isinstance(cached, FinishedRun) and cached.answer.payload == {"runId": "a"}
    for run_id in ("b", "c"):
        t = ticket(run_id, "k", None)
        hub.begin(t)
        hub.finish(t, FinalAnswer({}))
    assert hub.lookup("a") is None  # the oldest answer went
    assert hub.in_flight() == []
