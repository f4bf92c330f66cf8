"""Successful completions through the real server: routing, session keys, prompt, SSE sequence,
errors before and after the first token, fallbacks, heartbeats, long streams, keep-alive."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
import trio

from gateway.providers.base import Emit, ModelRequest, ProviderError
from gateway.types import ChatMessage
from tests.harness import AUTH, ScriptedProvider, start_server
from tests.memory_store import MemoryStore
from tests.rawhttp import open_request, read_until

USER = [{"role": "user", "content": "hello there"}]
AGENTS = {
    "agents": {
        "defaults": {"systemPrompt": "You are helpful."},
        "list": [
            {"id": "main", "default": True},
            {"id": "coder", "model": "scripted/x", "systemPrompt": "You write code."},
        ],
    }
}


def sse_events(text: str) -> list[Any]:
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


async def test_non_streaming_echo(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json={"messages": USER})
    assert response.status_code == 200
    body = response.json()
    assert re.fullmatch(r"chatcmpl_[0-9a-f-]{36}", body["id"])
    assert body["object"] == "chat.completion"
    assert body["model"] == "openclaw"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "hello there"},
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert re.fullmatch(
        r"agent:main:openai:[0-9a-f-]{36}", response.headers["x-openclaw-session-key"]
    )


async def test_streaming_sequence(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    body = {
        "model": "openclaw/main",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": USER,
    }
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    assert all(
        c["object"] == "chat.completion.chunk" and c["model"] == "openclaw/main" for c in chunks
    )
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    ]
    deltas = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert deltas == ["hello ", "there"]
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}


async def test_streaming_without_usage_option_has_no_usage_chunk(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post(
            "/v1/chat/completions", json={"stream": True, "messages": USER}
        )
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("model", "headers", "agent"),
    [
        (None, {}, "main"),
        ("openclaw", {}, "main"),
        ("openclaw/default", {}, "main"),
        ("openclaw:coder", {}, "coder"),
        ("OpenClaw/Coder", {}, "coder"),
        ("agent:coder", {}, "coder"),
        ("openclaw", {"x-openclaw-agent-id": "coder"}, "coder"),
        ("openclaw:main", {"x-openclaw-agent": "CODER"}, "coder"),
    ],
)
async def test_agent_resolution(
    nursery: trio.Nursery, model: str | None, headers: dict[str, str], agent: str
) -> None:
    scripted = ScriptedProvider(words=["ok"])
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    body: dict[str, Any] = {"messages": USER}
    if model is not None:
        body["model"] = model
    async with httpx.AsyncClient(base_url=server.url, headers={**AUTH, **headers}) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.json()["model"] == (model or "openclaw")
    assert response.headers["x-openclaw-session-key"].startswith(f"agent:{agent}:openai:")
    assert bool(scripted.calls) == (agent == "coder")


async def test_session_keys(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        by_user = await client.post(
            "/v1/chat/completions", json={"messages": USER, "user": "Bob@Example"}
        )
        by_header = await client.post(
            "/v1/chat/completions",
            json={"messages": USER, "user": "ignored"},
            headers={"x-openclaw-session-key": "my-session"},
        )
    assert by_user.headers["x-openclaw-session-key"] == "agent:main:openai-user:bob@example"
    assert by_header.headers["x-openclaw-session-key"] == "my-session"


async def test_prompt_and_forwarded_params(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["ok"])
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    body = {
        "model": "openclaw:coder",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use Python."}]},
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "temperature": 0.5,
        "max_completion_tokens": 99,
        "stop": "END",
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "unknown_field": "ignored",
    }
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    request = scripted.calls[0].request
    assert request.model == "x"
    assert request.system == "You write code.\n\nBe brief.\n\nUse Python."
    assert [m["role"] for m in request.messages] == ["user", "assistant", "tool"]
    assert request.messages[1]["tool_calls"][0]["id"] == "c1"
    assert request.messages[2]["tool_call_id"] == "c1"
    assert dict(request.params) == {
        "temperature": 0.5,
        "max_completion_tokens": 99,
        "stop": ["END"],
        "tools": tools,
        "tool_choice": {"type": "function", "function": {"name": "f"}},
    }


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (ProviderError("bad_request", "bad thing"), 400, None),
        (ProviderError("auth", "scripted rejected our API key"), 502, None),
        (ProviderError("rate_limited", "slow down", retry_after=7), 429, "7"),
        (ProviderError("upstream", "boom"), 502, None),
        (ProviderError("timeout", "too slow"), 504, None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_provider_error_before_first_token_is_a_real_status(
    nursery: trio.Nursery, error: ProviderError, status: int, retry_after: str | None, stream: bool
) -> None:
    scripted = ScriptedProvider(fail=error)
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    body = {"model": "openclaw:coder", "stream": stream, "messages": USER}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    assert response.json()["error"]["message"] == error.message
    assert response.headers.get("retry-after") == retry_after


async def test_error_after_first_token_is_an_sse_error_then_done(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(fail=ProviderError("upstream", "lost it"), fail_after=2)
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    body = {"model": "openclaw:coder", "stream": True, "messages": USER}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    events = sse_events(response.text)
    assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == ["one ", "two "]
    assert events[3] == {
        "error": {"message": "lost it", "type": "upstream_error", "param": None, "code": "upstream"}
    }
    assert events[4] == "[DONE]"
    assert len(events) == 5


async def test_error_with_a_lone_surrogate_after_first_token_still_ends_the_stream(
    nursery: trio.Nursery,
) -> None:
    # An upstream's JSON error may escape a lone surrogate: the stream must still end cleanly.
    failing = ProviderError("upstream", "bad \ud800 thing", provider="scripted")
    scripted = ScriptedProvider(fail=failing, fail_after=1)
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    body = {"model": "openclaw:coder", "stream": True, "messages": USER}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
    events = sse_events(response.text)
    assert events[2]["error"]["message"] == "bad \ufffd thing"
    assert events[-1] == "[DONE]"


async def test_fallback_before_first_token(nursery: trio.Nursery) -> None:
    primary = ScriptedProvider("primary", fail=ProviderError("upstream", "down"))
    backup = ScriptedProvider("backup", words=["saved"])
    config = {
        "agents": {"defaults": {"model": {"primary": "primary/a", "fallbacks": ["backup/b"]}}}
    }
    server = await start_server(nursery, config, providers={"primary": primary, "backup": backup})
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json={"messages": USER})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "saved"
    assert len(primary.calls) == 1 and backup.calls[0].request.model == "b"


async def test_no_fallback_after_first_token(nursery: trio.Nursery) -> None:
    primary = ScriptedProvider("primary", fail=ProviderError("upstream", "cut"), fail_after=1)
    backup = ScriptedProvider("backup", words=["saved"])
    config = {
        "agents": {"defaults": {"model": {"primary": "primary/a", "fallbacks": ["backup/b"]}}}
    }
    server = await start_server(nursery, config, providers={"primary": primary, "backup": backup})
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json={"messages": USER})
    assert response.status_code == 502
    assert not backup.calls


async def test_no_fallback_on_bad_request(nursery: trio.Nursery) -> None:
    primary = ScriptedProvider("primary", fail=ProviderError("bad_request", "nope"))
    backup = ScriptedProvider("backup")
    config = {
        "agents": {"defaults": {"model": {"primary": "primary/a", "fallbacks": ["backup/b"]}}}
    }
    server = await start_server(nursery, config, providers={"primary": primary, "backup": backup})
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json={"messages": USER})
    assert response.status_code == 400
    assert not backup.calls


async def test_heartbeat_while_waiting_for_the_first_token(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["late"], first_delay=0.4)
    config = {**AGENTS, "gateway": {"http": {"heartbeatSeconds": 0.05}}}
    server = await start_server(nursery, config, providers={"scripted": scripted})
    body = {"model": "openclaw:coder", "stream": True, "messages": USER}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    text = response.text
    assert text.count(": ping\n\n") >= 2
    assert text.index(": ping") < text.index('"late"')
    assert sse_events(text)[-1] == "[DONE]"


async def test_app_response_timeout_does_not_cut_streams(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["a ", "b ", "c"], delay=0.2)
    server = await start_server(nursery, AGENTS, providers={"scripted": scripted})
    server.gateway.quart.config["RESPONSE_TIMEOUT"] = 0.1
    body = {"model": "openclaw:coder", "stream": True, "messages": USER}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
    events = sse_events(response.text)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "a b c"
    assert events[-1] == "[DONE]"


async def test_idle_keep_alive_connection_is_closed(nursery: trio.Nursery) -> None:
    """Hypercorn's keep-alive idle timer must survive quart-trio's post-response cancel."""
    server = await start_server(nursery, hypercorn_options={"keep_alive_timeout": 0.3})
    stream = await open_request(server.url, {"messages": USER})
    async with stream:
        await read_until(stream, b'"finish_reason":"stop"')
        with trio.fail_after(3):
            while await stream.receive_some(65536):
                pass


class BrokenStore(MemoryStore):
    async def context(self, key: str, limit: int | None) -> list[ChatMessage]:
        raise RuntimeError("disk on fire")


class CrashingProvider(ScriptedProvider):
    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        raise KeyError("bug")


@pytest.mark.parametrize("stream", [False, True])
async def test_bugs_become_openai_shaped_500s(nursery: trio.Nursery, stream: bool) -> None:
    server = await start_server(nursery, AGENTS, providers={"scripted": CrashingProvider()})
    body = {"model": "openclaw:coder", "stream": stream, "messages": USER}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 500
        assert response.json()["error"]["message"] == "The model provider failed unexpectedly."
        assert "bug" not in response.text


async def test_store_failure_is_a_clean_500(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, store=BrokenStore())
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json={"messages": USER, "user": "u"})
        assert response.status_code == 500
        assert response.json()["error"] == {
            "message": "Internal server error",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        assert "fire" not in response.text
        # The server keeps answering.
        assert (await client.get("/health")).status_code == 200
