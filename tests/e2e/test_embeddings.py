"""``POST /v1/embeddings`` through the real server to the fake upstream: shapes, model choice,
parameters passed through, bad input, and a client that leaves closing the upstream request."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import trio

from gateway.testing import FakeUpstream, Script, open_fake_upstream
from gateway.testing.fake_upstream_embeddings import embedding_vector
from tests.harness import AUTH, TOKEN, Server, start_server
from tests.rawhttp import open_request

LIMIT = 0.1


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream() as upstream:
        yield upstream


def config_for(up: FakeUpstream, **defaults: Any) -> dict[str, Any]:
    return {
        "models": {
            "providers": {
                "openai": {
                    "baseUrl": up.base_url,
                    "models": [
                        {"id": "gpt-4o"},
                        {"id": "text-embedding-3-small", "embedding": True},
                        {"id": "text-embedding-3-large", "embedding": True},
                    ],
                },
                "plain": {"baseUrl": up.base_url, "models": [{"id": "chat-only"}]},
                "claude": {
                    "baseUrl": up.root_url,
                    "api": "anthropic-messages",
                    "models": [{"id": "sonnet"}, {"id": "claude-embed", "embedding": True}],
                },
            }
        },
        "agents": {
            "defaults": {"model": "openai/gpt-4o", **defaults},
            "list": [
                {"id": "main", "default": True},
                {"id": "local", "model": "plain/chat-only"},
                {"id": "poet", "model": "claude/sonnet"},
            ],
        },
    }


async def embed(server: Server, body: Any, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        return await client.post("/v1/embeddings", json=body, headers={**AUTH, **headers})


async def test_one_input_and_many(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await start_server(nursery, config_for(up))
    single = await embed(server, {"model": "openclaw", "input": "hello world"})
    assert single.status_code == 200, single.text
    body = single.json()
    assert body["object"] == "list"
    assert body["model"] == "openclaw"
    assert body["data"] == [
        {"object": "embedding", "index": 0, "embedding": embedding_vector("hello world")}
    ]
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    sent = up.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {"model": "text-embedding-3-small", "input": ["hello world"]}
    many = await embed(
        server,
        {"model": "openclaw/main", "input": ["a", "b", "c"], "dimensions": 4},
        **{"x-openclaw-model": "openai/text-embedding-3-large"},
    )
    assert many.status_code == 200, many.text
    assert [item["index"] for item in many.json()["data"]] == [0, 1, 2]
    assert all(len(item["embedding"]) == 4 for item in many.json()["data"])
    assert many.json()["model"] == "openclaw/main"
    assert len(up.requests) == 2  # one upstream request for the array
    assert up.requests[-1].body == {
        "model": "text-embedding-3-large",
        "input": ["a", "b", "c"],
        "dimensions": 4,
    }
    tokens = await embed(server, {"input": [[1, 2], [3]], "encoding_format": "base64"})
    assert tokens.status_code == 200, tokens.text
    assert all(isinstance(item["embedding"], str) for item in tokens.json()["data"])
    assert up.requests[-1].body["encoding_format"] == "base64"


async def test_the_openai_sdk(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await start_server(nursery, config_for(up))
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=TOKEN)
    async with client:
        result = await client.embeddings.create(model="openclaw", input=["x", "y"])
    assert [len(item.embedding) for item in result.data] == [8, 8]
    assert result.model == "openclaw"
    assert result.usage.prompt_tokens == 2


async def test_model_choice_errors(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await start_server(nursery, config_for(up))
    unknown = await embed(server, {"input": "x"}, **{"x-openclaw-model": "openai/nope"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "Invalid `x-openclaw-model`."
    none_marked = await embed(server, {"model": "openclaw/local", "input": "x"})
    assert none_marked.status_code == 400
    assert none_marked.json()["error"]["message"].startswith(
        "Provider 'plain' has no embedding model"
    )
    no_api = await embed(server, {"model": "openclaw/poet", "input": "x"})
    assert no_api.status_code == 400
    assert no_api.json()["error"]["message"] == "Provider 'claude' has no embeddings API."
    ghost = await embed(server, {"model": "openclaw/ghost", "input": "x"})
    assert ghost.status_code == 400
    assert ghost.json()["error"]["message"] == "Unknown agent 'ghost'."
    assert up.requests == []


@pytest.mark.parametrize(
    "body",
    [{"input": ""}, {"input": []}, {"input": ["a", ""]}, {"input": ["x"] * 2049}, {"model": "x"}],
)
async def test_bad_input(nursery: trio.Nursery, up: FakeUpstream, body: Any) -> None:
    server = await start_server(nursery, config_for(up))
    response = await embed(server, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] in ("input", "model")
    assert up.requests == []


async def test_switch_auth_and_method(nursery: trio.Nursery, up: FakeUpstream) -> None:
    config = config_for(up)
    server = await start_server(nursery, config)
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.post("/v1/embeddings", json={"input": "x"})).status_code == 401
        assert (await client.get("/v1/embeddings", headers=AUTH)).status_code == 405
    off = {**config, "gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": False}}}}}
    closed = await start_server(nursery, off)
    response = await embed(closed, {"input": "x"})
    assert response.status_code == 404


async def test_upstream_errors_are_mapped(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await start_server(nursery, config_for(up))
    up.enqueue(Script(status=429, retry_after="7"))
    limited = await embed(server, {"input": "x"})
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.json()["error"]["code"] == "rate_limited"


async def test_a_client_that_leaves_closes_the_upstream(
    nursery: trio.Nursery, up: FakeUpstream
) -> None:
    server = await start_server(nursery, config_for(up))
    up.enqueue(Script(headers_delay=30))
    stream = await open_request(server.url, {"input": "slow"}, path="/v1/embeddings")
    record = await up.wait_request(0)
    left = time.monotonic()
    await stream.aclose()
    with trio.fail_after(5):
        await record.closed.wait()
    assert record.closed_at is not None
    assert record.closed_at - left < LIMIT
