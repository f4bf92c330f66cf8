"""A turn the store cannot record is not answered as a success: the client gets the store's
error (JSON: its status; streaming: an error event before ``[DONE]``), so nothing acknowledged
is lost."""

from __future__ import annotations

import json
from collections.abc import Sequence

import httpx
import pytest
import trio

from gateway.errors import GatewayError
from gateway.sessions.base import TurnStatus
from gateway.types import ChatMessage, UsageDict
from tests.harness import AUTH, start_server
from tests.memory_store import MemoryStore
from tests.ws.wsclient import Operator


class RefusingStore(MemoryStore):
    """Reads work; recording a turn fails as an unreachable database does."""

    async def append_turn(
        self,
        key: str,
        agent_id: str,
        run_id: str,
        messages: Sequence[ChatMessage],
        status: TurnStatus,
        usage: UsageDict | None = None,
        channel: str | None = None,
    ) -> None:
        raise GatewayError(
            "The session store is unavailable; try again shortly.",
            status=503,
            code="store_unavailable",
            retry_after=2,
        )


BODY = {"messages": [{"role": "user", "content": "hello"}], "user": "u1"}


async def test_json(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, store=RefusingStore())
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=BODY)
        stateless = await client.post("/v1/chat/completions", json={**BODY, "user": None})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "store_unavailable"
    assert stateless.status_code == 200  # nothing to record


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_streaming(nursery: trio.Nursery, path: str) -> None:
    config = {"gateway": {"http": {"endpoints": {"responses": {"enabled": True}}}}}
    server = await start_server(nursery, config, store=RefusingStore())
    body = {**BODY, "stream": True}
    if path == "/v1/responses":
        body = {"input": "hello", "user": "u1", "stream": True}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post(path, json=body)
    assert response.status_code == 200  # the stream had started
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    if path == "/v1/chat/completions":
        assert events[-1]["error"]["code"] == "store_unavailable"
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert events[-1]["type"] == "response.failed"
        assert events[-1]["response"]["error"]["message"].startswith(
            "The session store is unavailable"
        )


async def test_websocket(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, store=RefusingStore())
    operator = await Operator.open(server.url)
    key = "agent:main:refused"
    await operator.call("chat.history", {"sessionKey": key})
    started = await operator.call(
        "chat.send", {"sessionKey": key, "message": "hello", "idempotencyKey": "r-1"}
    )
    assert started["ok"], started
    ended = await operator.event("chat", runId="r-1", state="error")
    assert "unavailable" in ended["payload"]["errorMessage"]
    assert not [
        e for e in operator.events if e["event"] == "chat" and e["payload"]["state"] == "final"
    ]
    await operator.ws.send_close()
