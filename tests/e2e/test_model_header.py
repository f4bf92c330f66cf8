"""``x-openclaw-model``: a request picks its model (``provider/model`` or a bare id one provider
declares) on chat completions and the Responses API; unknown ones are refused, and an explicit
model has no fallbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.harness import AUTH, Server, start_server


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream() as upstream:
        yield upstream


def config_for(up: FakeUpstream) -> dict[str, Any]:
    return {
        "gateway": {"http": {"endpoints": {"responses": {"enabled": True}}}},
        "models": {
            "providers": {
                "main": {"baseUrl": up.base_url, "models": [{"id": "big"}, {"id": "small"}]},
                "backup": {"baseUrl": up.base_url, "models": [{"id": "spare"}]},
                "any": {"baseUrl": up.base_url},
            }
        },
        "agents": {"defaults": {"model": {"primary": "main/big", "fallbacks": ["backup/spare"]}}},
    }


async def post(server: Server, path: str, body: Any, model: str | None) -> httpx.Response:
    headers = dict(AUTH)
    if model is not None:
        headers["x-openclaw-model"] = model
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.post(path, json=body, headers=headers)


CHAT = {"messages": [{"role": "user", "content": "hi"}]}
RESPONSES = {"input": "hi"}


@pytest.mark.parametrize(
    ("path", "body"), [("/v1/chat/completions", CHAT), ("/v1/responses", RESPONSES)]
)
@pytest.mark.parametrize(
    ("header", "sent"),
    [
        (None, "big"),
        ("main/small", "small"),
        ("spare", "spare"),
        ("any/whatever-7b", "whatever-7b"),
    ],
)
async def test_the_header_picks_the_model(
    nursery: trio.Nursery, up: FakeUpstream, path: str, body: Any, header: str | None, sent: str
) -> None:
    server = await start_server(nursery, config_for(up))
    response = await post(server, path, body, header)
    assert response.status_code == 200, response.text
    assert up.requests[-1].body["model"] == sent


@pytest.mark.parametrize(
    ("path", "body"), [("/v1/chat/completions", CHAT), ("/v1/responses", RESPONSES)]
)
@pytest.mark.parametrize("header", ["main/huge", "ghost/big", "huge", "", "main/"])
async def test_unknown_models_are_refused(
    nursery: trio.Nursery, up: FakeUpstream, path: str, body: Any, header: str
) -> None:
    server = await start_server(nursery, config_for(up))
    response = await post(server, path, body, header)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "Invalid `x-openclaw-model`."
    assert error["param"] == "x-openclaw-model"
    assert error["type"] == "invalid_request_error"
    assert up.requests == []


async def test_an_explicit_model_has_no_fallbacks(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await start_server(nursery, config_for(up))
    # The agent's own model falls back when its provider fails...
    up.enqueue(Script(status=500))
    fell_back = await post(server, "/v1/chat/completions", CHAT, None)
    assert fell_back.status_code == 200
    assert [r.body["model"] for r in up.requests] == ["big", "spare"]
    # ... the same model named in the header does not.
    up.requests.clear()
    up.enqueue(Script(status=500))
    failed = await post(server, "/v1/chat/completions", CHAT, "main/big")
    assert failed.status_code == 502
    assert [r.body["model"] for r in up.requests] == ["big"]
