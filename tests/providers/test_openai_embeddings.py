from __future__ import annotations

import base64
import struct
import time
from typing import Any

import pytest
import trio
import trio.testing

from gateway.providers.base import EmbeddingResult, ProviderError, supports_embeddings
from gateway.providers.echo import EchoProvider
from gateway.providers.openai_embeddings import embeddings_body, embeddings_result
from gateway.providers.registry import build_provider
from gateway.settings import ProviderApi
from gateway.testing import FakeUpstream, Script
from gateway.testing.fake_upstream_embeddings import embedding_vector
from tests.providers.support import open_provider, settings_for

KINDS = ["openai-completions", "openai-responses"]


def test_body_passes_only_the_embedding_parameters() -> None:
    params = {"encoding_format": "base64", "dimensions": 64, "user": "u", "temperature": 1}
    assert embeddings_body("e", ["a", "b"], params) == {
        "model": "e",
        "input": ["a", "b"],
        "encoding_format": "base64",
        "dimensions": 64,
    }
    assert embeddings_body("e", [[1, 2]], {"dimensions": None}) == {"model": "e", "input": [[1, 2]]}


def test_result_keeps_the_answer_as_it_is() -> None:
    answer = (
        b'{"object": "list", "data": [{"index": 0, "embedding": [0.5], "extra": 1}],'
        b' "model": "up", "usage": {"prompt_tokens": 2, "total_tokens": 2}}'
    )
    assert embeddings_result("p", "asked", answer) == EmbeddingResult(
        model="up",
        data=[{"index": 0, "embedding": [0.5], "extra": 1}],
        usage={"prompt_tokens": 2, "total_tokens": 2},
    )
    bare = embeddings_result("p", "asked", b'{"data": []}')
    assert (bare.model, bare.data, bare.usage) == ("asked", [], None)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (b"not json", "protocol"),
        (b'{"data": "nope"}', "protocol"),
        (b"[1]", "protocol"),
        (b'{"error": {"message": "slow", "type": "rate_limit_error"}}', "rate_limited"),
    ],
)
def test_unusable_answers(answer: bytes, kind: str) -> None:
    with pytest.raises(ProviderError) as caught:
        embeddings_result("p", "m", answer)
    assert (caught.value.kind, caught.value.provider) == (kind, "p")


@pytest.mark.parametrize(
    ("api", "supported"),
    [
        ("openai-completions", True),
        ("openai-responses", True),
        ("anthropic-messages", False),
        ("google-generative-ai", False),
        ("ollama", False),
    ],
)
async def test_which_providers_embed(api: ProviderApi, supported: bool) -> None:
    provider = build_provider(settings_for("http://127.0.0.1:9/v1", api))
    assert supports_embeddings(provider) is supported
    await provider.aclose()
    assert not supports_embeddings(EchoProvider())


@pytest.mark.parametrize("api", KINDS)
async def test_embed_through_the_upstream(up: FakeUpstream, api: ProviderApi) -> None:
    settings = settings_for(up.base_url, api, api_key="sk-e", headers={"X-Org": "o"})
    async with open_provider(settings) as provider:
        assert supports_embeddings(provider)
        result = await provider.embed(
            "text-embedding-3-small", ["hello world", "bye"], {"dimensions": 4}
        )
    seen = up.requests[0]
    assert (seen.method, seen.path) == ("POST", "/v1/embeddings")
    assert (seen.headers["authorization"], seen.headers["x-org"]) == ("Bearer sk-e", "o")
    assert seen.body == {
        "model": "text-embedding-3-small",
        "input": ["hello world", "bye"],
        "dimensions": 4,
    }
    assert result.model == "text-embedding-3-small"
    assert [item["embedding"] for item in result.data] == [
        pytest.approx(embedding_vector("hello world", 4)),
        pytest.approx(embedding_vector("bye", 4)),
    ]
    assert [item["index"] for item in result.data] == [0, 1]
    assert result.usage == {"prompt_tokens": 3, "total_tokens": 3}


@pytest.mark.parametrize("api", KINDS)
async def test_base64_and_token_inputs(up: FakeUpstream, api: ProviderApi) -> None:
    async with open_provider(settings_for(up.base_url, api)) as provider:
        result = await provider.embed("e", [[1, 2, 3]], {"encoding_format": "base64"})
        again = await provider.embed("e", [[1, 2, 3]], {})
    packed = base64.b64decode(result.data[0]["embedding"])
    assert struct.unpack(f"<{len(packed) // 4}f", packed) == pytest.approx(
        again.data[0]["embedding"]
    )
    assert [record.connection for record in up.requests] == [1, 1]


@pytest.mark.parametrize("api", KINDS)
@pytest.mark.parametrize(
    ("script", "kind", "status"),
    [
        (Script(status=400, error_message="input too long"), "bad_request", 400),
        (Script(status=401), "auth", 502),
        (Script(status=429, retry_after="2"), "rate_limited", 429),
        (Script(status=503), "upstream", 502),
        (Script(fault="close_before_headers"), "upstream", 502),
        (Script(fault="reset_mid_stream"), "upstream", 502),
        (Script(fault="close_mid_stream"), "upstream", 502),
    ],
)
async def test_failures(
    up: FakeUpstream, api: ProviderApi, script: Script, kind: str, status: int
) -> None:
    up.script = script
    async with open_provider(settings_for(up.base_url, api)) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.embed("e", ["x"], {})
    assert (caught.value.kind, caught.value.status, caught.value.provider) == (kind, status, "fake")


@pytest.mark.parametrize("api", KINDS)
@pytest.mark.parametrize(
    "script",
    [
        Script(fault="hang_before_headers"),
        Script(first_token_delay=60),
        Script(fault="hang_mid_stream"),
    ],
)
async def test_deadlines(
    up: FakeUpstream, api: ProviderApi, script: Script, autojump_clock: trio.abc.Clock
) -> None:
    up.script = script
    settings = settings_for(up.base_url, api, first_byte_timeout_seconds=5, idle_timeout_seconds=3)
    async with open_provider(settings) as provider:
        start = trio.current_time()
        with pytest.raises(ProviderError) as caught:
            await provider.embed("e", ["x"], {})
    assert caught.value.kind == "timeout"
    expected = 3.0 if script.fault == "hang_mid_stream" else 5.0
    assert trio.current_time() - start == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("api", KINDS)
@pytest.mark.parametrize(
    "script", [Script(fault="hang_before_headers"), Script(fault="hang_mid_stream")]
)
async def test_cancel_closes_the_upstream_connection_at_once(
    up: FakeUpstream, api: ProviderApi, script: Script
) -> None:
    up.enqueue(script, Script())
    async with open_provider(settings_for(up.base_url, api)) as provider:
        scope = trio.CancelScope()
        results: list[Any] = []

        async def run() -> None:
            with scope:
                results.append(await provider.embed("e", ["x"], {}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            record = await up.wait_request(0)
            await record.wait_for("fault")
            await trio.testing.wait_all_tasks_blocked()
            cancelled_at = time.monotonic()
            scope.cancel()
            with trio.fail_after(5):
                await record.closed.wait()
        assert scope.cancelled_caught and results == []
        assert record.closed_at is not None and record.closed_at - cancelled_at < 0.1
        assert len((await provider.embed("e", ["y"], {})).data) == 1
    assert [r.connection for r in up.requests] == [1, 2]
