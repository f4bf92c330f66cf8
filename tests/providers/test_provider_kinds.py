"""The Responses, Gemini and Ollama providers against the fake upstream, on real sockets: relaying,
tools, usage, framing, every fault and error status, deadlines and connection reuse
(cancellation: ``test_provider_kinds_cancellation``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing

from gateway.agents.events import Finish, ProviderEvent, TextDelta, Usage
from gateway.providers.base import ProviderError
from gateway.settings import ProviderApi
from gateway.testing import FakeToolCall, FakeUpstream, Script
from tests.providers.support import (
    base_url_for,
    collect,
    open_provider,
    request,
    settings_for,
    text_of,
    tool_calls_of,
)

pytestmark = pytest.mark.parametrize("api", ["openai-responses", "google-generative-ai", "ollama"])

TEXT = 'Hello, wörld! 😀\n\nSecond  line\twith "quotes" and \\backslash\\ '
# Each API's own name for "the output limit was reached", as the fake's finish_reason knob.
LENGTH = {"openai-responses": "length", "google-generative-ai": "MAX_TOKENS", "ollama": "length"}


def settings(up: FakeUpstream, api: ProviderApi, **fields: Any) -> Any:
    return settings_for(base_url_for(up, api), api, **fields)


async def failure(
    up: FakeUpstream, api: ProviderApi, script: Script, **fields: Any
) -> ProviderError:
    up.script = script
    async with open_provider(settings(up, api, **fields)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.provider == "fake"
    return caught.value


async def test_content_and_usage_are_relayed_exactly(up: FakeUpstream, api: ProviderApi) -> None:
    up.script = Script(text=TEXT, prompt_tokens=21)
    async with open_provider(settings(up, api)) as provider:
        events = await collect(provider)
    pieces = Script(text=TEXT).pieces()
    assert [e for e in events if isinstance(e, TextDelta)] == [TextDelta(p) for p in pieces]
    assert events[-2:] == [Usage(21, len(pieces)), Finish("stop")]


async def test_tool_calls_are_relayed(up: FakeUpstream, api: ProviderApi) -> None:
    calls = (
        FakeToolCall("get_weather", '{"city": "Paris", "unit": "celsius"}', id="call_a"),
        FakeToolCall("noop", "{}"),
    )
    up.script = Script(text="Let me check.", tool_calls=calls)
    async with open_provider(settings(up, api)) as provider:
        events = await collect(provider)
    assert text_of(events) == "Let me check."
    found = tool_calls_of(events)
    assert [(c["name"], json.loads(c["arguments"])) for c in found] == [
        ("get_weather", {"city": "Paris", "unit": "celsius"}),
        ("noop", {}),
    ]
    assert found[0]["id"] == "call_a"
    assert found[1]["id"] and found[1]["id"] != found[0]["id"]
    assert events[-1] == Finish("tool_calls")


@pytest.mark.parametrize(
    "framing",
    [
        {"crlf": True},
        {"comments": True},
        {"split_bytes": 1},
        {"crlf": True, "comments": True, "split_bytes": 3},
        {"fault": "malformed_sse", "fault_after": 2},
    ],
)
async def test_framing_variants(
    up: FakeUpstream, api: ProviderApi, framing: dict[str, Any]
) -> None:
    up.script = Script(text=TEXT).with_overrides(framing)
    async with open_provider(settings(up, api)) as provider:
        events = await collect(provider)
    assert text_of(events) == TEXT
    assert events[-1] == Finish("stop")


async def test_missing_end_marker_still_finishes(up: FakeUpstream, api: ProviderApi) -> None:
    up.enqueue(
        Script(tokens=3, fault="no_done"),
        Script(tokens=0, tool_calls=(FakeToolCall("f"),), fault="no_done"),
    )
    async with open_provider(settings(up, api)) as provider:
        first = await collect(provider)
        assert (text_of(first), first[-1]) == ("w0 w1 w2", Finish("stop"))
        assert (await collect(provider))[-1] == Finish("tool_calls")


async def test_output_limit_finishes_with_length(up: FakeUpstream, api: ProviderApi) -> None:
    up.script = Script(tokens=2, finish_reason=LENGTH[api])
    async with open_provider(settings(up, api)) as provider:
        assert (await collect(provider))[-1] == Finish("length")


async def test_without_usage(up: FakeUpstream, api: ProviderApi) -> None:
    up.script = Script(tokens=2, include_usage=False)
    async with open_provider(settings(up, api)) as provider:
        events = await collect(provider)
    assert not any(isinstance(event, Usage) for event in events)
    assert events[-1] == Finish("stop")


async def test_json_answer_is_accepted(up: FakeUpstream, api: ProviderApi) -> None:
    up.script = Script(
        text="whole answer", tool_calls=(FakeToolCall("f", '{"a": 1}'),), force_json=True
    )
    async with open_provider(settings(up, api)) as provider:
        events = await collect(provider)
    assert text_of(events) == "whole answer"
    assert [(c["name"], c["arguments"]) for c in tool_calls_of(events)] == [("f", '{"a": 1}')]
    assert events[-2:] == [Usage(11, 3), Finish("tool_calls")]


async def test_invalid_json_is_a_protocol_error(up: FakeUpstream, api: ProviderApi) -> None:
    seen: list[ProviderEvent] = []

    async def emit(event: ProviderEvent) -> None:
        seen.append(event)

    up.script = Script(tokens=4, fault="invalid_json", fault_after=2)
    async with open_provider(settings(up, api)) as provider:
        with pytest.raises(ProviderError) as caught:
            await provider.stream(request(), emit)
    assert (caught.value.kind, caught.value.status, caught.value.provider) == (
        "protocol",
        502,
        "fake",
    )
    assert text_of(seen) == "w0 w1"


async def test_error_event_mid_stream(up: FakeUpstream, api: ProviderApi) -> None:
    error = await failure(
        up, api, Script(tokens=4, fault="error_event", error_message="model crashed")
    )
    assert (error.kind, error.status) == ("upstream", 502)
    assert "model crashed" in error.message


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_bad_request_carries_the_upstream_message(
    up: FakeUpstream, api: ProviderApi, status: int
) -> None:
    error = await failure(up, api, Script(status=status, error_message="max_tokens: too big"))
    assert (error.kind, error.status, error.upstream_status) == ("bad_request", 400, status)
    assert error.message == "max_tokens: too big"


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failure_is_502_naming_the_provider(
    up: FakeUpstream, api: ProviderApi, status: int
) -> None:
    error = await failure(up, api, Script(status=status, error_message="invalid key sk-123"))
    assert (error.kind, error.status) == ("auth", 502)
    assert "'fake'" in error.message and "sk-123" not in error.message


async def test_rate_limit_keeps_retry_after(up: FakeUpstream, api: ProviderApi) -> None:
    error = await failure(up, api, Script(status=429, retry_after="17", error_message="slow"))
    assert (error.kind, error.status, error.retry_after) == ("rate_limited", 429, 17.0)


@pytest.mark.parametrize(
    "script",
    [
        Script(status=500, error_message="internal"),
        Script(status=502, error_content_type="text/html"),
    ],
)
async def test_server_errors_are_502(up: FakeUpstream, api: ProviderApi, script: Script) -> None:
    error = await failure(up, api, script)
    assert (error.kind, error.status) == ("upstream", 502)
    assert "<" not in error.message


@pytest.mark.parametrize("fault", ["reset_mid_stream", "close_mid_stream"])
async def test_broken_stream(up: FakeUpstream, api: ProviderApi, fault: str) -> None:
    error = await failure(up, api, Script(tokens=4).with_overrides({"fault": fault}))
    assert (error.kind, error.status) == ("upstream", 502)


async def test_closed_before_answering(up: FakeUpstream, api: ProviderApi) -> None:
    error = await failure(up, api, Script(fault="close_before_headers"))
    assert error.kind == "upstream"


@pytest.mark.parametrize(
    "script",
    [Script(headers_delay=60), Script(first_token_delay=60), Script(fault="hang_before_headers")],
    ids=["before-headers", "after-headers", "hang"],
)
async def test_first_byte_timeout(
    up: FakeUpstream, api: ProviderApi, script: Script, autojump_clock: trio.abc.Clock
) -> None:
    start = trio.current_time()
    error = await failure(up, api, script, first_byte_timeout_seconds=5.0)
    assert trio.current_time() - start == pytest.approx(5.0, abs=0.1)
    assert (error.kind, error.status) == ("timeout", 504)
    assert (await up.wait_closed(0)).close_cause == "client_eof"


async def test_idle_timeout(
    up: FakeUpstream, api: ProviderApi, autojump_clock: trio.abc.Clock
) -> None:
    start = trio.current_time()
    script = Script(tokens=5, fault="hang_mid_stream", fault_after=2)
    error = await failure(up, api, script, first_byte_timeout_seconds=50, idle_timeout_seconds=7)
    assert trio.current_time() - start == pytest.approx(7.0, abs=0.1)
    assert (error.kind, error.message) == ("timeout", "Provider 'fake' stalled: no data for 7 s")


async def test_connection_is_reused_after_complete_answers(
    up: FakeUpstream, api: ProviderApi
) -> None:
    async with open_provider(settings(up, api)) as provider:
        for _ in range(3):
            await collect(provider)
    assert [record.connection for record in up.requests] == [1, 1, 1]


async def test_untranslatable_request_sends_nothing(up: FakeUpstream, api: ProviderApi) -> None:
    remote = {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
    async with open_provider(settings(up, api)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider, request(remote))  # type: ignore[arg-type]
    assert caught.value.kind == "bad_request"
    assert up.requests == []
