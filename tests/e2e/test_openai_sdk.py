"""The official ``openai`` Python SDK against the real server (the SDK runs in a worker thread,
with its own blocking HTTP client)."""

from __future__ import annotations

from typing import Any

import openai
import pytest
import trio

from tests.harness import TOKEN, start_server


def sdk(url: str, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=10)


async def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))


async def test_non_streaming(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = sdk(server.url)
    completion = await in_thread(
        client.chat.completions.create,
        model="openclaw",
        messages=[{"role": "user", "content": "hello from the sdk"}],
    )
    assert completion.choices[0].message.content == "hello from the sdk"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 4
    assert completion.model == "openclaw"


async def test_streaming_with_usage(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = sdk(server.url)

    def run() -> list[Any]:
        stream = client.chat.completions.create(
            model="openclaw/main",
            messages=[{"role": "user", "content": "stream me please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)

    chunks = await in_thread(run)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "stream me please"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 3


async def test_models_and_errors(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    client = sdk(server.url)
    models = await in_thread(client.models.list)
    assert [m.id for m in models.data] == ["openclaw", "openclaw/default", "openclaw/main"]
    assert (await in_thread(client.models.retrieve, "openclaw/main")).id == "openclaw/main"
    with pytest.raises(openai.AuthenticationError):
        await in_thread(
            sdk(server.url, "wrong").chat.completions.create,
            model="openclaw",
            messages=[{"role": "user", "content": "x"}],
        )
    with pytest.raises(openai.BadRequestError, match="Unknown agent 'nobody'"):
        await in_thread(
            client.chat.completions.create,
            model="openclaw:nobody",
            messages=[{"role": "user", "content": "x"}],
        )
