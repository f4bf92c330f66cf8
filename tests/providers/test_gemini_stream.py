from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.agents.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.base import ProviderError
from gateway.providers.gemini_stream import GeminiStream
from gateway.providers.upstream_sse import SSEEvent
from gateway.testing import FakeToolCall, Script
from gateway.testing.fake_upstream_gemini import gemini_stream
from tests.providers.support import same_at_every_cut, sent_bytes, sse_events


def chunk(*parts: dict[str, Any], finish: str | None = None, **fields: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], **fields}


def run(*docs: dict[str, Any]) -> list[ProviderEvent]:
    stream = GeminiStream("p")
    events: list[ProviderEvent] = []
    for doc in docs:
        events.extend(stream.feed(SSEEvent(json.dumps(doc))))
    return events + stream.finish()


def test_text_thoughts_calls_and_usage() -> None:
    events = run(
        chunk({"text": "pondering", "thought": True}, usageMetadata={"promptTokenCount": 9}),
        chunk({"text": "Hello"}, {"text": ""}, "junk"),  # type: ignore[arg-type]
        chunk({"text": " world"}),
        chunk(
            {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}},
            {"functionCall": {"name": "now", "id": "g1"}},
        ),
        chunk(
            {"text": ""},
            finish="STOP",
            usageMetadata={
                "promptTokenCount": 9,
                "candidatesTokenCount": 7,
                "thoughtsTokenCount": 20,
            },
        ),
    )
    first, second, weather, now, usage, finish = events
    assert (first, second) == (TextDelta("Hello"), TextDelta(" world"))
    assert isinstance(weather, ToolCallDelta) and weather.id and weather.id.startswith("call_")
    assert (weather.index, weather.name, weather.arguments) == (0, "weather", '{"city": "Oslo"}')
    assert now == ToolCallDelta(1, "{}", id="g1", name="now")
    assert (usage, finish) == (Usage(9, 27), Finish("tool_calls"))


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons(reason: str, finish: str) -> None:
    assert run(chunk({"text": "x"}, finish=reason))[-1] == Finish(finish)


def test_blocked_prompt() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 4},
    }
    assert run(blocked) == [Usage(4, 0), Finish("content_filter")]


def test_a_stream_without_finish_reason_and_odd_shapes() -> None:
    assert run(
        {"candidates": []},
        {"candidates": ["junk"]},
        {"candidates": [{"content": "junk"}]},
        chunk({"text": "ok"}),
    ) == [TextDelta("ok"), Finish("stop")]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}, "rate_limited"),
        ({"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}, "bad_request"),
        ({"message": "bad", "status": "INVALID_ARGUMENT"}, "bad_request"),
        ({"message": "quota", "status": "RESOURCE_EXHAUSTED"}, "rate_limited"),
        ({"code": 500, "message": "oops", "status": "INTERNAL"}, "upstream"),
        ({"message": "?", "status": "SOMETHING"}, "upstream"),
    ],
)
def test_error_objects(error: dict[str, Any], kind: str) -> None:
    stream = GeminiStream("p")
    stream.feed(SSEEvent(json.dumps(chunk({"text": "a"}))))
    with pytest.raises(ProviderError) as caught:
        stream.feed(SSEEvent(json.dumps({"error": error})))
    assert (caught.value.kind, caught.value.provider) == (kind, "p")


@pytest.mark.parametrize("data", ["{bad", "[1]", '"x"'])
def test_bad_data_is_a_protocol_error(data: str) -> None:
    with pytest.raises(ProviderError) as caught:
        GeminiStream("p").feed(SSEEvent(data))
    assert caught.value.kind == "protocol"


def test_blank_event_and_empty_stream() -> None:
    stream = GeminiStream("p")
    assert stream.feed(SSEEvent(" ")) == []
    with pytest.raises(ProviderError, match="without any data"):
        stream.finish()


def test_the_fake_stream_split_at_every_byte() -> None:
    script = Script(text="Grüße 🌍 and more", tool_calls=(FakeToolCall("f", '{"a": 1}', id="g"),))
    body = sent_bytes(gemini_stream(script, {}))
    expected = same_at_every_cut(body, lambda *pieces: sse_events(GeminiStream("p"), *pieces))
    assert "".join(e.text for e in expected if isinstance(e, TextDelta)) == script.text
    assert expected[-3:] == [
        ToolCallDelta(0, '{"a": 1}', id="g", name="f"),
        Usage(11, 5),
        Finish("tool_calls"),
    ]
