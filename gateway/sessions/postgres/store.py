"""Everything a gateway host keeps in PostgreSQL, as one unit: the connections, the schema, this
host's presence and listener, and on them the transcripts, the stored responses, admission and
the cross-host session events.

``serve`` (in the app's lifespan) migrates the schema and starts the listener. A database with a
newer schema than this gateway knows stops the startup with ``SchemaTooNew``. A database that
does not answer at startup does not: the host starts not ready (``/readyz`` 503, stateful
requests 503, stateless runs admitted by this host alone) and keeps trying, every second, until
the database answers; then everything works without a restart.
"""

from __future__ import annotations

import logging

import trio

from gateway.sessions.postgres._transcripts_sql import APPENDED
from gateway.sessions.postgres.admission import PgAdmission
from gateway.sessions.postgres.bus import PgEventBus
from gateway.sessions.postgres.connection import PgDatabase, StoreUnavailable
from gateway.sessions.postgres.host import Host
from gateway.sessions.postgres.responses import PgResponses
from gateway.sessions.postgres.schema import migrate
from gateway.sessions.postgres.transcripts import PgTranscripts
from gateway.sessions.postgres.url import display

logger = logging.getLogger("gateway.sessions")

RETRY_SECONDS = 1.0


class PgStore:
    def __init__(self, url: str, *, max_concurrent: int, connections: int = 6) -> None:
        self.url = url
        self.db = PgDatabase(url, size=connections)
        self.host = Host(url, self._notified, self._reconnected)
        self.admission = PgAdmission(self.db, self.host, max_concurrent=max_concurrent)
        self.transcripts = PgTranscripts(self.db)
        self.responses = PgResponses(self.db)
        self.events = PgEventBus(self.db, self.host.token)
        self.ready = trio.Event()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Migrate, listen, admit and relay until cancelled (see the module docstring)."""
        self.db.start()
        async with trio.open_nursery() as nursery:
            try:
                await self._open()
            except StoreUnavailable as error:
                logger.warning(
                    "database %s unavailable at startup (%s); retrying", display(self.url),
                    error.detail if self.url not in error.detail else "connection failed",
                )  # fmt: skip
                nursery.start_soon(self._open_when_possible)
            await nursery.start(self.admission.serve)
            await nursery.start(self.events.serve)
            task_status.started()

    async def ping(self) -> bool:
        return self.ready.is_set() and await self.admission.ping()

    async def aclose(self) -> None:
        await self.host.aclose()
        await self.db.aclose()

    async def _open(self) -> None:
        version = await migrate(self.db)
        try:
            await self.host.start()
        except Exception as error:
            raise StoreUnavailable(str(error)) from None
        self.ready.set()
        logger.info("store: %s (schema version %d)", display(self.url), version)

    async def _open_when_possible(self) -> None:
        while True:
            await trio.sleep(RETRY_SECONDS)
            try:
                await self._open()
            except StoreUnavailable:
                continue
            return

    def _notified(self, channel: str, payload: str) -> None:
        if channel == "gateway_events":
            self.events.notified(payload)
        elif channel == APPENDED:
            self.transcripts.notified(payload)
        else:
            self.admission.notified(channel, payload)

    def _reconnected(self) -> None:
        self.admission.reconnected()
        self.transcripts.follow.ring_all()
