"""Client → gateway → fake upstream (OpenAI- and Anthropic-compatible), all real HTTP on loopback:
relaying, tools, usage, error mapping, fallbacks, and the upstream seeing its connection close
when the client leaves."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from gateway.testing import FakeToolCall, FakeUpstream, Script, open_fake_upstream
from tests.harness import start_server
from tests.rawhttp import open_request, read_until
from tests.upstreams import chat, serve, sse, weather_answered

APIS = ["openai-completions", "anthropic-messages"]
# Every kind (the others' own relaying is in ``test_upstream_kinds``): error mapping, and the
# upstream seeing its connection close when the client leaves.
ALL_APIS = [*APIS, "openai-responses", "google-generative-ai", "ollama"]
LIMIT = 0.1


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream() as upstream:
        yield upstream


@pytest.mark.parametrize("api", APIS)
async def test_content_and_usage_relayed_exactly(
    nursery: trio.Nursery, up: FakeUpstream, api: str
) -> None:
    server = await serve(nursery, up, api)
    text = 'Grüße, 世界! «quotes» "and" \\ backslashes\nnew line'
    up.enqueue(Script(text=text, prompt_tokens=13))
    plain = await chat(server)
    assert plain.status_code == 200, plain.text
    assert plain.json()["choices"][0]["message"]["content"] == text
    assert plain.json()["usage"]["prompt_tokens"] == 13
    up.enqueue(Script(text=text, prompt_tokens=13))
    streamed = await chat(server, stream=True, stream_options={"include_usage": True})
    events = sse(streamed)
    chunks = [e for e in events[:-1] if e["choices"]]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in chunks) == text
    assert events[-2]["usage"]["prompt_tokens"] == 13
    assert events[-1] == "[DONE]"
    assert up.requests[0].body["model"] == "m"
    assert up.requests[0].body["stream"] is True  # always streamed from upstream


@pytest.mark.parametrize("api", APIS)
async def test_tools_both_ways(nursery: trio.Nursery, up: FakeUpstream, api: str) -> None:
    server = await serve(nursery, up, api)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    call = FakeToolCall(name="get_weather", arguments='{"city": "Paris"}', id="call_1")
    up.enqueue(Script(text="", tool_calls=(call,)))
    first = await chat(server, tools=tools, stream=True)
    events = sse(first)
    deltas = [e["choices"][0]["delta"] for e in events[:-1] if e["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["id"] and calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city": "Paris"}'
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    call_id = calls[0]["id"]
    up.enqueue(Script(text="", tool_calls=(call,)))
    plain = await chat(server, tools=tools)
    message = plain.json()["choices"][0]
    assert message["finish_reason"] == "tool_calls"
    assert message["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    up.enqueue(Script(text="It is sunny."))
    follow_up = await chat(
        server,
        tools=tools,
        messages=weather_answered(call_id),
    )
    assert follow_up.json()["choices"][0]["message"]["content"] == "It is sunny."
    sent = json.dumps(up.requests[2].body)
    assert call_id in sent and "sunny, 21 C" in sent
    assert "get_weather" in json.dumps(up.requests[0].body)


async def test_forwarded_params_reach_openai_upstream(
    nursery: trio.Nursery, up: FakeUpstream
) -> None:
    server = await serve(nursery, up, "openai-completions")
    response = await chat(
        server,
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        stop=["\n\n"],
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        response_format={"type": "json_object"},
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}],
    )
    assert response.status_code == 200
    body = up.requests[0].body
    for key, value in {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["\n\n"],
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "response_format": {"type": "json_object"},
    }.items():
        assert body[key] == value
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}
    assert up.requests[0].headers["authorization"] == "Bearer sk-test"
    await chat(server, max_completion_tokens=64)
    assert up.requests[1].body["max_completion_tokens"] == 64
    assert "max_tokens" not in up.requests[1].body


@pytest.mark.parametrize("api", ALL_APIS)
@pytest.mark.parametrize(
    ("script", "status", "check"),
    [
        ({"status": 400, "error_message": "context too long"}, 400, "context too long"),
        ({"status": 401}, 502, "fake"),
        ({"status": 403}, 502, "fake"),
        ({"status": 429, "retry_after": "12"}, 429, None),
        ({"status": 500}, 502, None),
        ({"status": 502, "error_content_type": "text/html"}, 502, None),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_error_mapping(
    nursery: trio.Nursery,
    up: FakeUpstream,
    api: str,
    script: dict[str, Any],
    status: int,
    check: str | None,
    stream: bool,
) -> None:
    server = await serve(nursery, up, api)
    up.enqueue(Script().with_overrides(script))
    response = await chat(server, stream=stream)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if check:
        assert check in error["message"]
    if status == 429:
        assert response.headers["retry-after"] == "12"
    assert "<html" not in response.text.lower()


async def test_unreachable_upstream_is_502(nursery: trio.Nursery) -> None:
    config = {
        "models": {"providers": {"down": {"baseUrl": "http://127.0.0.1:9/v1"}}},
        "agents": {"defaults": {"model": "down/m"}},
    }
    server = await start_server(nursery, config)
    response = await chat(server)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "connect"


async def test_first_byte_timeout_is_504(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await serve(nursery, up, "openai-completions", firstByteTimeoutSeconds=0.2)
    up.enqueue(Script(first_token_delay=30))
    response = await chat(server, stream=True)
    assert response.status_code == 504
    await up.wait_closed(0)


async def test_error_mid_stream_is_an_sse_error(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await serve(nursery, up, "openai-completions")
    up.enqueue(Script(tokens=5, fault="reset_mid_stream", fault_after=2))
    response = await chat(server, stream=True)
    events = sse(response)
    assert response.status_code == 200
    assert "error" in events[-2] and events[-1] == "[DONE]"


async def test_fallback_to_another_provider(nursery: trio.Nursery, up: FakeUpstream) -> None:
    server = await serve(nursery, up, "anthropic-messages", fallbacks=["backup/b"])
    up.enqueue(Script(status=503))
    up.enqueue(Script(text="from the backup"))
    response = await chat(server)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "from the backup"
    assert up.requests[0].path.endswith("/messages")
    assert up.requests[1].body["model"] == "b"


@pytest.mark.parametrize("api", ALL_APIS)
@pytest.mark.parametrize(
    ("phase", "script", "stream"),
    [
        ("waiting for headers", {"headers_delay": 30}, True),
        ("before the first token", {"first_token_delay": 30}, True),
        ("mid-stream", {"tokens": 10_000, "token_delay": 0.005}, True),
        ("non-streaming, before the first token", {"first_token_delay": 30}, False),
        ("non-streaming, mid-stream", {"tokens": 10_000, "token_delay": 0.005}, False),
    ],
)
async def test_disconnect_closes_the_upstream(
    nursery: trio.Nursery,
    up: FakeUpstream,
    api: str,
    phase: str,
    script: dict[str, Any],
    stream: bool,
) -> None:
    server = await serve(nursery, up, api)
    up.enqueue(Script().with_overrides(script))
    client = await open_request(
        server.url, {"stream": stream, "messages": [{"role": "user", "content": "go"}]}
    )
    record = await up.wait_request(0)
    if "mid-stream" in phase:
        await record.wait_for("first_byte")
        if stream:
            await read_until(client, b'"content":"w0')
    elif phase != "waiting for headers":
        await record.wait_for("headers_sent")
    closed_at = time.monotonic()
    await client.aclose()
    with trio.fail_after(2):
        await record.closed.wait()
    assert record.closed_at is not None
    latency = record.closed_at - closed_at
    assert latency < LIMIT, f"{phase}: upstream closed {latency * 1000:.1f} ms after the client"
    assert record.close_cause in ("client_eof", "client_reset")
