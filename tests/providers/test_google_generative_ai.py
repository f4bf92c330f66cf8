from __future__ import annotations

import pytest

from gateway.agents.events import Finish, ToolCallDelta, Usage
from gateway.providers.base import ProviderError
from gateway.settings import ProviderApi
from gateway.testing import FakeToolCall, FakeUpstream, Script
from tests.providers.support import collect, open_provider, request, settings_for, text_of, user

API: ProviderApi = "google-generative-ai"


@pytest.mark.parametrize("suffix", ["", "/", "/v1beta", "/v1beta/"])
async def test_base_url_with_or_without_v1beta(up: FakeUpstream, suffix: str) -> None:
    async with open_provider(settings_for(up.root_url + suffix, API)) as provider:
        await collect(provider, request(model="gemini-2.5-flash"))
    assert up.requests[0].path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"


async def test_request_as_the_upstream_sees_it(up: FakeUpstream) -> None:
    settings = settings_for(
        up.root_url, API, api_key="AIza-test", headers={"x-goog-user-project": "p"}
    )
    req = request(user("Hello"), model="models/gemini-3-flash", system="Be kind.", temperature=0.2)
    async with open_provider(settings) as provider:
        await collect(provider, req)
    seen = up.requests[0]
    assert seen.path == "/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse"
    assert seen.headers["x-goog-api-key"] == "AIza-test"
    assert seen.headers["x-goog-user-project"] == "p"
    assert "authorization" not in seen.headers
    assert seen.body == {
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "systemInstruction": {"parts": [{"text": "Be kind."}]},
        "generationConfig": {"temperature": 0.2},
    }


async def test_tool_round_trip(up: FakeUpstream) -> None:
    up.enqueue(Script(tokens=0, tool_calls=(FakeToolCall("weather", '{"city": "Oslo"}'),)))
    async with open_provider(settings_for(up.root_url, API)) as provider:
        events = await collect(provider, request(model="gemini-3-pro"))
        call = next(event for event in events if isinstance(event, ToolCallDelta))
        assert call.id and call.name == "weather"
        assert events[-2:] == [Usage(11, 1), Finish("tool_calls")]
        history = request(
            user("weather?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": "weather", "arguments": call.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp": -3}'},
            model="gemini-3-pro",
        )
        await collect(provider, history)
    contents = up.requests[1].body["contents"]
    assert contents[1]["parts"][0]["functionCall"] == {"name": "weather", "args": {"city": "Oslo"}}
    assert contents[2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "weather", "response": {"temp": -3}}}],
    }


@pytest.mark.parametrize(
    ("error_type", "kind"),
    [
        ("RESOURCE_EXHAUSTED", "rate_limited"),
        ("INVALID_ARGUMENT", "bad_request"),
        (None, "upstream"),
    ],
)
async def test_error_in_the_stream(up: FakeUpstream, error_type: str | None, kind: str) -> None:
    up.script = Script(tokens=3, fault="error_event", error_type=error_type, error_message="quota")
    async with open_provider(settings_for(up.root_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == kind
    assert "quota" in caught.value.message


async def test_safety_block(up: FakeUpstream) -> None:
    up.script = Script(tokens=2, finish_reason="SAFETY")
    async with open_provider(settings_for(up.root_url, API)) as provider:
        assert (await collect(provider))[-1] == Finish("content_filter")


async def test_error_status_body_in_google_shape(up: FakeUpstream) -> None:
    up.script = Script(status=400, error_message="API key not valid. Please pass a valid API key.")
    async with open_provider(settings_for(up.root_url, API)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert (caught.value.kind, caught.value.message) == (
        "bad_request",
        "API key not valid. Please pass a valid API key.",
    )
    assert up.requests[0].body is not None


async def test_text_is_relayed_in_order(up: FakeUpstream) -> None:
    up.script = Script(text="one two three")
    async with open_provider(settings_for(up.root_url, API)) as provider:
        assert text_of(await collect(provider)) == "one two three"
