from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.agents.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage
from gateway.providers.base import ProviderError
from gateway.providers.ollama_stream import OllamaStream
from gateway.testing import FakeToolCall, Script
from gateway.testing.fake_upstream_ollama import ollama_stream
from tests.providers.support import ndjson_events, same_at_every_cut, sent_bytes


def line(content: str = "", done: bool = False, **fields: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, **fields.pop("message", {})}
    return {"model": "m", "message": message, "done": done, **fields}


def run(*lines: Any) -> list[ProviderEvent]:
    stream = OllamaStream("p")
    events: list[ProviderEvent] = []
    for value in lines:
        events.extend(stream.feed(json.dumps(value)))
    return events + stream.finish()


def test_text_thinking_calls_and_usage() -> None:
    events = run(
        line(message={"thinking": "hmm"}),
        line("Hel"),
        line("lo"),
        line(
            message={
                "tool_calls": [
                    {"function": {"name": "weather", "arguments": {"city": "Zürich"}}},
                    {"id": "o1", "function": {"name": "now", "arguments": "{}"}},
                    {"function": "junk"},
                    "junk",
                ]
            }
        ),
        line(done=True, done_reason="stop", prompt_eval_count=26, eval_count=9),
        line("after done"),
    )
    first, second, weather, now, usage, finish = events
    assert (first, second) == (TextDelta("Hel"), TextDelta("lo"))
    assert isinstance(weather, ToolCallDelta) and weather.id and weather.id.startswith("call_")
    assert (weather.index, weather.name, weather.arguments) == (0, "weather", '{"city": "Zürich"}')
    assert now == ToolCallDelta(1, "{}", id="o1", name="now")
    assert (usage, finish) == (Usage(26, 9), Finish("tool_calls"))


@pytest.mark.parametrize(
    ("reason", "finish"), [("stop", "stop"), ("length", "length"), ("load", "stop"), (None, "stop")]
)
def test_done_reasons(reason: str | None, finish: str) -> None:
    assert run(line("x", done=True, done_reason=reason)) == [TextDelta("x"), Finish(finish)]


def test_end_without_done_line_finishes() -> None:
    assert run(line("a"), line(message={"tool_calls": [{"function": {"name": "f"}}]}))[
        -1
    ] == Finish("tool_calls")


def test_errors() -> None:
    stream = OllamaStream("p")
    stream.feed_value(line("a"))
    with pytest.raises(ProviderError) as caught:
        stream.feed('{"error": "model runner has unexpectedly stopped"}')
    assert (caught.value.kind, caught.value.provider) == ("upstream", "p")
    assert "unexpectedly stopped" in caught.value.message
    for bad_line in ("[1]", "{not json"):
        with pytest.raises(ProviderError) as bad:
            OllamaStream("p").feed(bad_line)
        assert bad.value.kind == "protocol"
    with pytest.raises(ProviderError, match="without any data"):
        OllamaStream("p").finish()


def test_lines_after_done_are_not_even_parsed() -> None:
    stream = OllamaStream("p")
    stream.feed_value(line("x", done=True))
    assert stream.done
    assert stream.feed("{not json") == []
    assert stream.feed_value({"error": "late"}) == []


def test_the_fake_stream_split_at_every_byte() -> None:
    script = Script(text="Hej, världen 👋", tool_calls=(FakeToolCall("f", '{"a": 1}', id="o"),))
    body = sent_bytes(ollama_stream(script, {}))
    expected = same_at_every_cut(body, lambda *pieces: ndjson_events(OllamaStream("p"), *pieces))
    assert "".join(e.text for e in expected if isinstance(e, TextDelta)) == script.text
    assert expected[-3:] == [
        ToolCallDelta(0, '{"a": 1}', id="o", name="f"),
        Usage(11, 4),
        Finish("tool_calls"),
    ]
