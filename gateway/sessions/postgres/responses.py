"""The stored-response store in PostgreSQL, shared by every gateway host on the database: the
promises of ``gateway.sessions.responses``, kept as the SQLite store keeps them (chains followed
in one recursive query, the newest item with an id wins, ``put`` replaces). When the database
does not answer, calls raise ``StoreUnavailable`` (503)."""

from __future__ import annotations

from collections.abc import Collection
from functools import partial

import psycopg

from gateway.sessions.postgres import _responses_sql as sql
from gateway.sessions.postgres._sql import select_one
from gateway.sessions.postgres.connection import PgDatabase, StoreUnavailable
from gateway.sessions.postgres.schema import SchemaGate, SchemaTooNew
from gateway.sessions.responses import ItemsPage, Order, StoredResponse
from gateway.types import JSONObject

__all__ = ["PgResponses"]


class PgResponses:
    """A ``ResponseStore`` on ``db`` (see ``gateway.sessions.responses``). Constructing it does
    no I/O; the schema is brought up to date on first use. ``db`` stays its owner's: ``aclose``
    does not close it. Cancellation as ``PgDatabase.run``: a call whose query has started waits
    for its commit or rollback."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db
        self._schema = SchemaGate(db)

    async def put(self, stored: StoredResponse, expires_at: int) -> None:
        """Store (or replace) ``stored`` with its items; returns once committed."""
        await self._schema.ensure()
        await self._db.run(partial(sql.put, stored, expires_at))

    async def get(self, response_id: str) -> StoredResponse | None:
        await self._schema.ensure()
        return await self._db.run(partial(sql.get, response_id))

    async def chain(self, response_id: str) -> list[StoredResponse] | None:
        await self._schema.ensure()
        return await self._db.run(partial(sql.chain, response_id))

    async def find_items(self, item_ids: Collection[str]) -> dict[str, JSONObject]:
        await self._schema.ensure()
        return await self._db.run(partial(sql.find_items, tuple(item_ids)))

    async def input_items(
        self, response_id: str, limit: int, after: str | None, order: Order
    ) -> ItemsPage | None:
        await self._schema.ensure()
        return await self._db.run(partial(sql.input_items, response_id, limit, after, order))

    async def delete(self, response_id: str) -> bool:
        await self._schema.ensure()
        return await self._db.run(partial(sql.delete, response_id))

    async def prune(self, now: int) -> int:
        """Delete the responses expired at ``now`` (their items with them); returns how many."""
        await self._schema.ensure()
        return await self._db.run(partial(sql.prune, now))

    async def ping(self) -> bool:
        """Whether the database answers a query; never raises."""
        try:
            await self._schema.ensure()
            await self._db.run(select_one)
        except (StoreUnavailable, SchemaTooNew, psycopg.Error):
            return False
        return True

    async def aclose(self) -> None:
        """Nothing to release: the connections are the database owner's."""
