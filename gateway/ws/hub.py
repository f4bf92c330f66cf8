"""The per-process hub of the WebSocket side: who is connected, who follows which session, which
runs are in flight, and the final answers of recent runs (for idempotent retries).

One hub per app, created with it (no module-level state). It never waits: delivering an event
is queueing it in each receiver's outbox, or dropping it there when that outbox is full.
Worker processes share nothing, so a client sees the runs of the process it is connected to.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from gateway.agents.run import Run
from gateway.types import JSONObject
from gateway.ws.outbox import Outbox
from gateway.ws.run_events import FinalAnswer, OutEvent, RunStatus, RunTranslator

# How many sessions one connection may follow; the oldest is dropped beyond that.
MAX_SUBSCRIPTIONS_PER_PEER = 256
DEFAULT_CACHED_RUNS = 1000


class Peer(Protocol):
    """A connection as the hub sees it."""

    @property
    def conn_id(self) -> str: ...

    @property
    def outbox(self) -> Outbox: ...


@dataclass(eq=False, slots=True)
class RunTicket:
    """A run started over WebSocket, from ``accepted`` until its events are all published.

    ``run`` is the run's handle once it is opened (right after the acceptance is sent); ``done``
    is set once its last event has been published.
    """

    translator: RunTranslator
    origin: Peer | None
    run: Run | None = None
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def run_id(self) -> str:
        return self.translator.run_id

    @property
    def session_key(self) -> str:
        return self.translator.session_key


@dataclass(frozen=True, slots=True)
class FinishedRun:
    run_id: str
    session_key: str
    agent_id: str
    status: RunStatus
    answer: FinalAnswer


class Hub:
    def __init__(self, max_cached_runs: int = DEFAULT_CACHED_RUNS) -> None:
        self._peers: set[Peer] = set()
        self._followers: dict[str, dict[Peer, None]] = {}
        self._following: dict[Peer, OrderedDict[str, None]] = {}
        self._in_flight: dict[str, RunTicket] = {}
        self._finished: OrderedDict[str, FinishedRun] = OrderedDict()
        self._max_cached = max_cached_runs
        # Where this host's session events also go (the other hosts, over the store).
        self.relay: Callable[[str, list[JSONObject]], None] | None = None

    # Connections and subscriptions

    @property
    def peers(self) -> frozenset[Peer]:
        return frozenset(self._peers)

    def attach(self, peer: Peer) -> None:
        self._peers.add(peer)
        self._following[peer] = OrderedDict()

    def detach(self, peer: Peer) -> None:
        """Forget ``peer`` and its subscriptions (idempotent)."""
        self._peers.discard(peer)
        for key in self._following.pop(peer, {}):
            self._unfollow(key, peer)

    def follow(self, peer: Peer, session_key: str) -> None:
        """Send ``peer`` the events of every run on ``session_key`` from now on."""
        keys = self._following.get(peer)
        if keys is None:  # not attached (closing)
            return
        keys[session_key] = None
        keys.move_to_end(session_key)
        self._followers.setdefault(session_key, {})[peer] = None
        while len(keys) > MAX_SUBSCRIPTIONS_PER_PEER:
            oldest, _ = keys.popitem(last=False)
            self._unfollow(oldest, peer)

    def _unfollow(self, session_key: str, peer: Peer) -> None:
        followers = self._followers.get(session_key)
        if followers is not None:
            followers.pop(peer, None)
            if not followers:
                del self._followers[session_key]

    def publish(self, ticket: RunTicket, events: Iterable[OutEvent]) -> None:
        """Queue ``events`` for the run's origin and the session's followers; never waits."""
        events = list(events)
        if not events:
            return
        receivers = dict(self._followers.get(ticket.session_key, {}))
        if ticket.origin is not None and ticket.origin in self._peers:
            receivers[ticket.origin] = None
        for peer in receivers:
            for event in events:
                peer.outbox.post_event(event.event, event.payload, essential=event.essential)
        if self.relay is not None:
            self.relay(
                ticket.session_key,
                [
                    {"event": e.event, "payload": e.payload, "essential": e.essential}
                    for e in events
                ],
            )

    def deliver_remote(self, session_key: str, events: list[JSONObject]) -> None:
        """Events of a run on another host: queued for this host's followers of the session."""
        followers = self._followers.get(session_key)
        if not followers:
            return
        for peer in list(followers):
            for event in events:
                name, payload = event.get("event"), event.get("payload")
                if name in ("agent", "chat") and isinstance(payload, dict):
                    peer.outbox.post_event(name, payload, essential=bool(event.get("essential")))

    # Runs

    def lookup(self, run_id: str) -> RunTicket | FinishedRun | None:
        """The run with this id (the idempotency key), in flight or recently finished."""
        return self._in_flight.get(run_id) or self._finished.get(run_id)

    def begin(self, ticket: RunTicket) -> None:
        if ticket.run_id in self._in_flight:
            raise ValueError(f"run {ticket.run_id} is already in flight")
        self._finished.pop(ticket.run_id, None)
        self._in_flight[ticket.run_id] = ticket

    def forget(self, ticket: RunTicket) -> None:
        """Release the id of a run that never started."""
        if self._in_flight.get(ticket.run_id) is ticket:
            del self._in_flight[ticket.run_id]
        ticket.done.set()

    def finish(self, ticket: RunTicket, answer: FinalAnswer) -> None:
        """Move the run from in flight to the bounded cache of recent answers; sets ``done``."""
        if self._in_flight.get(ticket.run_id) is ticket:
            del self._in_flight[ticket.run_id]
        translator = ticket.translator
        self._finished[ticket.run_id] = FinishedRun(
            ticket.run_id, ticket.session_key, translator.agent_id, translator.status, answer
        )
        while len(self._finished) > self._max_cached:
            self._finished.popitem(last=False)
        ticket.done.set()

    def in_flight(
        self, *, session_key: str | None = None, origin: Peer | None = None
    ) -> list[RunTicket]:
        return [
            ticket
            for ticket in self._in_flight.values()
            if (session_key is None or ticket.session_key == session_key)
            and (origin is None or ticket.origin is origin)
        ]
