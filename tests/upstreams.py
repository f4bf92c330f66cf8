"""What the end-to-end tests of the provider kinds share: a gateway whose agent's model is a
provider of one kind on the fake upstream (with an OpenAI-compatible ``backup`` provider for
fallbacks), a chat completion through it, the documents of an SSE answer, and a conversation
with a tool call answered."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from gateway.testing import FakeUpstream
from tests.harness import AUTH, Server, start_server

# The kinds whose ``baseUrl`` is the server's root (they add their own API paths to it).
_ROOTED = {"google-generative-ai", "ollama"}


def config_for(
    up: FakeUpstream, api: str, fallbacks: list[str] | None = None, **provider: Any
) -> dict[str, Any]:
    model: Any = "fake/m" if fallbacks is None else {"primary": "fake/m", "fallbacks": fallbacks}
    base_url = up.root_url if api in _ROOTED else up.base_url
    return {
        "models": {
            "providers": {
                "fake": {"baseUrl": base_url, "api": api, "apiKey": "sk-test", **provider},
                "backup": {"baseUrl": up.base_url, "api": "openai-completions"},
            }
        },
        "agents": {"defaults": {"model": model}},
    }


async def serve(nursery: trio.Nursery, up: FakeUpstream, api: str, **kw: Any) -> Server:
    return await start_server(nursery, config_for(up, api, **kw))


async def chat(server: Server, **body: Any) -> httpx.Response:
    body.setdefault("messages", [{"role": "user", "content": "hi"}])
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as client:
        return await client.post("/v1/chat/completions", json=body)


def sse(response: httpx.Response) -> list[Any]:
    out = []
    for block in response.text.split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def weather_answered(call_id: str) -> list[dict[str, Any]]:
    """A conversation whose last message answers the assistant's ``get_weather`` call."""
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21 C"},
    ]
