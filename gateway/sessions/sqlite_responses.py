"""The embedded response store: ``responses.sqlite3`` under ``<state dir>/gateway/``, WAL,
``synchronous=FULL`` (a response the client was given survives a crash), shared by every
process on the state directory. The file is created on first use."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from functools import partial
from pathlib import Path

import trio

from gateway.sessions import _responses
from gateway.sessions._db import Database
from gateway.sessions.responses import ItemsPage, Order, StoredResponse
from gateway.types import JSONObject

__all__ = ["SQLiteResponses"]


class SQLiteResponses:
    """A ``ResponseStore`` on SQLite (see ``gateway.sessions.responses``)."""

    def __init__(self, directory: Path) -> None:
        self._db = Database(directory / "responses.sqlite3", synchronous="FULL")
        self._opened = False
        self._lock = trio.Lock()

    async def _open(self) -> Database:
        if not self._opened:
            async with self._lock:
                if not self._opened:
                    await self._db.open(_responses.VERSION, _responses.SCHEMA)
                    self._opened = True
        return self._db

    async def put(self, stored: StoredResponse, expires_at: int) -> None:
        db = await self._open()
        await db.write(partial(_responses.put, stored, expires_at))

    async def get(self, response_id: str) -> StoredResponse | None:
        db = await self._open()
        return await db.read(partial(_responses.get, response_id))

    async def chain(self, response_id: str) -> list[StoredResponse] | None:
        db = await self._open()
        return await db.read(partial(_responses.chain, response_id))

    async def find_items(self, item_ids: Collection[str]) -> dict[str, JSONObject]:
        db = await self._open()
        return await db.read(partial(_responses.find_items, tuple(item_ids)))

    async def input_items(
        self, response_id: str, limit: int, after: str | None, order: Order
    ) -> ItemsPage | None:
        db = await self._open()
        return await db.read(partial(_responses.input_items, response_id, limit, after, order))

    async def delete(self, response_id: str) -> bool:
        db = await self._open()
        return await db.write(partial(_responses.delete, response_id))

    async def prune(self, now: int) -> int:
        db = await self._open()
        return await db.write(partial(_responses.prune, now))

    async def ping(self) -> bool:
        try:
            db = await self._open()
            await db.read(_select_one)
        except (sqlite3.Error, OSError, RuntimeError):
            return False
        return True

    async def aclose(self) -> None:
        await self._db.aclose()


def _select_one(connection: sqlite3.Connection) -> object:
    return connection.execute("SELECT 1").fetchone()
