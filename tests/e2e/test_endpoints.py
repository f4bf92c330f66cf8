"""``/v1/models`` and the probes through the real server."""

from __future__ import annotations

import httpx
import trio

from tests.harness import AUTH, start_server
from tests.memory_store import MemoryStore

AGENTS = {"agents": {"list": [{"id": "main"}, {"id": "ops", "default": True}]}}


async def test_models(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, AGENTS)
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/v1/models")).status_code == 401
        listed = await client.get("/v1/models", headers=AUTH)
        one = await client.get("/v1/models/openclaw/ops", headers=AUTH)
        missing = await client.get("/v1/models/gpt-4o", headers=AUTH)
        wrong_method = await client.post("/v1/models", headers=AUTH)
    assert listed.json() == {
        "object": "list",
        "data": [
            {"id": i, "object": "model", "created": 0, "owned_by": "openclaw"}
            for i in ("openclaw", "openclaw/default", "openclaw/main", "openclaw/ops")
        ],
    }
    assert one.json() == {
        "id": "openclaw/ops",
        "object": "model",
        "created": 0,
        "owned_by": "openclaw",
    }
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert wrong_method.status_code == 405


async def test_probes(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path in ("/health", "/healthz"):
            response = await client.get(path)
            assert response.json() == {"ok": True, "status": "live"}
            assert response.headers["cache-control"] == "no-store"
            assert (await client.head(path)).status_code == 200
            assert (await client.post(path)).status_code == 405
        for path in ("/ready", "/readyz"):
            response = await client.get(path)
            assert (response.status_code, response.json()) == (200, {"ready": True})
            assert response.headers["cache-control"] == "no-store"
        store = server.gateway.runtime.transcripts
        assert isinstance(store, MemoryStore)
        store.healthy = False
        response = await client.get("/readyz")
        assert (response.status_code, response.json()) == (503, {"ready": False})
        store.healthy = True
        server.gateway.lifecycle.ready = False
        response = await client.get("/readyz")
        assert (response.status_code, response.json()) == (503, {"ready": False})
