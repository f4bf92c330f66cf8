"""This gateway host as the database sees it: its presence, and the notifications it listens to.

Presence: each host registers a row in ``gateway_hosts`` (a random token and a random 32-bit
``lock_key``) and holds the session-level advisory lock ``(NAMESPACE, lock_key)`` on its listener
connection for as long as it runs. The lock is the liveness signal: it disappears when the
host's database session ends (the process died, the connection broke: TCP keepalives notice a
vanished host in seconds), which every host can see in ``pg_locks``. A host is taken for dead
once its lock has been missing for ``DEAD_AFTER`` seconds (a reconnecting host takes it back
sooner), and its tickets are then deleted by whoever looks.

Notifications: the listener connection ``LISTEN``s on the gateway's channels; a thread waits on
it and hands each notification to trio (``on_notify(channel, payload)``). When the connection
breaks, the thread reconnects (backing off, at most 1 s apart), takes its lock back and calls
``on_reconnect`` so the owner can catch up on what it missed.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import trio
from psycopg import sql

from gateway.sessions.postgres.connection import connect
from gateway.sessions.postgres.url import redact

logger = logging.getLogger("gateway.sessions")

NAMESPACE = 0x6761  # the advisory-lock class of gateway hosts ("ga")
CHANNELS = ("gateway_admission", "gateway_kill", "gateway_events", "gateway_appended")
# A host whose lock has been missing this long is dead.
DEAD_AFTER = 2.0
_WAIT = 0.1  # how long the listener blocks at a time (it checks for a stop in between)


class Host:
    """This host's identity and listener (see the module docstring)."""

    def __init__(
        self,
        url: str,
        on_notify: Callable[[str, str], None],
        on_reconnect: Callable[[], None],
    ) -> None:
        self.url = url
        self.token = secrets.token_hex(8)
        self.lock_key = secrets.randbits(31)
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._up = threading.Event()

    @property
    def up(self) -> bool:
        """Whether the listener is connected (and this host's lock held)."""
        return self._up.is_set()

    async def start(self) -> None:
        """Register, take the lock and start listening; returns once listening (raises what
        the first connection raises)."""
        self._token = trio.lowlevel.current_trio_token()
        connection = await trio.to_thread.run_sync(self._connect)
        self._thread = threading.Thread(
            target=self._listen, args=(connection,), name="postgres listener", daemon=True
        )
        self._thread.start()

    async def aclose(self) -> None:
        """Stop listening and give up the lock (the row stays until the host is seen dead)."""
        self._stop.set()
        if self._thread is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._thread.join)

    def _connect(self) -> psycopg.Connection[Any]:
        connection = connect(self.url, "gateway listener", autocommit=True)
        try:
            connection.execute(
                "INSERT INTO gateway_hosts (token, lock_key, hostname, pid, started_at_ms)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (token) DO NOTHING",
                (self.token, self.lock_key, socket.gethostname(), os.getpid(),
                 int(time.time() * 1000)),
            )  # fmt: skip
            connection.execute("SELECT pg_advisory_lock(%s, %s)", (NAMESPACE, self.lock_key))
            for channel in CHANNELS:
                connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            connection.close()
            raise
        self._up.set()
        return connection

    def _listen(self, connection: psycopg.Connection[Any] | None) -> None:
        delay = 0.05
        try:
            while not self._stop.is_set():
                if connection is None:
                    try:
                        connection = self._connect()
                    except psycopg.Error as error:
                        logger.warning(
                            "database listener: %s; retrying", redact(str(error), self.url)
                        )
                        self._stop.wait(delay)
                        delay = min(delay * 2, 1.0)
                        continue
                    delay = 0.05
                    self._deliver(self._on_reconnect)
                try:
                    for notify in connection.notifies(timeout=_WAIT):
                        self._deliver(self._on_notify, notify.channel, notify.payload)
                except psycopg.Error as error:
                    self._up.clear()
                    logger.warning("database listener lost: %s", redact(str(error), self.url))
                    connection.close()
                    connection = None
        finally:
            self._up.clear()
            if connection is not None:
                connection.close()

    def _deliver(self, callback: Callable[..., None], *args: Any) -> None:
        assert self._token is not None
        try:
            self._token.run_sync_soon(callback, *args)
        except trio.RunFinishedError:
            self._stop.set()
