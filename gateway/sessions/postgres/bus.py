"""Session events between hosts: what a run on one host tells the WebSocket followers of its
session on the others (``gateway_events`` notifications).

``publish(session_key, events)`` never waits: the events (opaque JSON documents) go into a bounded
queue that a sender task writes as notifications, a batch per transaction; past the bound they
are dropped (the same rule as a slow WebSocket connection's outbox: a run never stalls). A payload
too large for a notification (PostgreSQL's limit is 8000 bytes) is written to ``gateway_events``
and its row id is sent instead. Every host delivers the events of the others (never its own) to
``on_events``; rows older than a minute are pruned.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg
import trio

from gateway.sessions.postgres.connection import PgDatabase, StoreUnavailable
from gateway.types import JSONObject

logger = logging.getLogger("gateway.sessions")

QUEUE = 1000
_INLINE = 7800
_KEEP_MS = 60_000
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

OnEvents = Callable[[str, list[JSONObject]], None]


class PgEventBus:
    def __init__(self, db: PgDatabase, origin: str) -> None:
        self._db = db
        self._origin = origin
        self._send, self._receive = trio.open_memory_channel[tuple[str, list[JSONObject]]](QUEUE)
        self.on_events: OnEvents | None = None
        self._dropped = 0

    def publish(self, session_key: str, events: list[JSONObject]) -> None:
        try:
            self._send.send_nowait((session_key, events))
        except trio.WouldBlock:
            self._dropped += 1
            if self._dropped in (1, 100, 10_000):
                logger.warning("cross-host events dropped (%d so far)", self._dropped)

    def notified(self, payload: str) -> None:
        """A ``gateway_events`` notification (on the trio thread)."""
        try:
            message = json.loads(payload)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("o") == self._origin:
            return
        if "id" in message:
            self._fetch_soon(int(message["id"]))
        else:
            self._deliver(message)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send what is published, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                batch = [await self._receive.receive()]
                while len(batch) < 256:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                try:
                    await self._db.run(partial(_send, self._origin, batch))
                except StoreUnavailable:
                    logger.debug("cross-host events not sent: the database is unavailable")

    _nursery: trio.Nursery | None = None

    def _fetch_soon(self, row: int) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._fetch, row)

    async def _fetch(self, row: int) -> None:
        try:
            payload = await self._db.run(partial(_read, row), transaction=False)
        except StoreUnavailable:
            return
        if payload is not None:
            self._deliver(json.loads(payload))

    def _deliver(self, message: dict[str, Any]) -> None:
        session_key, events = message.get("s"), message.get("e")
        if self.on_events is not None and isinstance(session_key, str) and isinstance(events, list):
            self.on_events(session_key, events)


def _send(
    origin: str, batch: list[tuple[str, list[JSONObject]]], db: psycopg.Connection[Any]
) -> None:
    now = int(time.time() * 1000)
    for session_key, events in batch:
        payload = _dumps({"o": origin, "s": session_key, "e": events})
        if len(payload.encode()) > _INLINE:
            row = db.execute(
                "INSERT INTO gateway_events (payload, created_at_ms) VALUES (%s, %s) RETURNING id",
                (payload, now),
            ).fetchone()
            assert row is not None
            payload = _dumps({"o": origin, "id": int(row[0])})
        db.execute("SELECT pg_notify('gateway_events', %s)", (payload,))
    db.execute("DELETE FROM gateway_events WHERE created_at_ms < %s", (now - _KEEP_MS,))


def _read(row: int, db: psycopg.Connection[Any]) -> str | None:
    found = db.execute("SELECT payload FROM gateway_events WHERE id = %s", (row,)).fetchone()
    return None if found is None else str(found[0])
