"""The fake upstream's Responses, Gemini, Ollama and embeddings routes, seen from a plain client."""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

import httpx
import pytest

from gateway.testing import FakeToolCall, FakeUpstream, Script, open_fake_upstream
from gateway.testing.fake_upstream_embeddings import embedding_vector

GEMINI = "/v1beta/models/gemini-x:streamGenerateContent"


@pytest.fixture
async def up() -> Any:
    async with open_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


def sse_events(body: str) -> list[tuple[str | None, Any]]:
    """(event name, JSON data) of every event."""
    found = []
    for block in body.replace("\r\n", "\n").split("\n\n"):
        name, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            found.append((name, data))
    return found


def ndjson(body: str) -> list[Any]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


async def test_responses_stream(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(text="Hi you", tool_calls=(FakeToolCall("f", '{"a": 1}'),), prompt_tokens=4)
    response = await client.post(f"{up.base_url}/responses", json={"model": "g", "stream": True})
    assert response.headers["content-type"] == "text/event-stream"
    events = sse_events(response.text)
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    kinds = [name for name, _ in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    arguments = "".join(
        d["delta"] for n, d in events if n == "response.function_call_arguments.delta"
    )
    assert (text, arguments) == ("Hi you", '{"a": 1}')
    added = [d["item"] for n, d in events if n == "response.output_item.added"]
    assert [item["type"] for item in added] == ["message", "function_call"]
    assert added[1]["call_id"] == "call_fake_0"
    final = events[-1][1]["response"]
    assert final["model"] == "g" and final["status"] == "completed"
    assert final["usage"] == {"input_tokens": 4, "output_tokens": 3, "total_tokens": 7}
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]


@pytest.mark.parametrize(
    ("script", "last"),
    [
        (Script(tokens=2, finish_reason="length"), "response.incomplete"),
        (
            Script(tokens=2, fault="error_event", error_type="rate_limit_exceeded"),
            "response.failed",
        ),
        (Script(tokens=2, fault="no_done"), "response.output_item.done"),
        (Script(tokens=2, omit_finish=True), "response.output_item.done"),
    ],
)
async def test_responses_stream_endings(
    up: FakeUpstream, client: httpx.AsyncClient, script: Script, last: str
) -> None:
    up.script = script
    response = await client.post(f"{up.base_url}/responses", json={"stream": True})
    name, data = sse_events(response.text)[-1]
    assert name == last
    if last == "response.incomplete":
        assert data["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    if last == "response.failed":
        assert data["response"]["error"]["code"] == "rate_limit_exceeded"


async def test_responses_object(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(text="whole", include_usage=False, finish_reason="content_filter")
    document = (await client.post(f"{up.base_url}/responses", json={"model": "g"})).json()
    assert document["status"] == "incomplete"
    assert document["incomplete_details"] == {"reason": "content_filter"}
    assert document["output"][0]["content"][0]["text"] == "whole"
    assert document["usage"] is None


async def test_gemini_sse_array_and_object(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(text="a b", tool_calls=(FakeToolCall("f", '{"x": 2}', id="g1"),))
    sse = await client.post(f"{up.root_url}{GEMINI}?alt=sse", json={})
    chunks = [data for _, data in sse_events(sse.text)]
    parts = [chunk["candidates"][0]["content"]["parts"] for chunk in chunks]
    assert parts[:3] == [
        [{"text": "a"}],
        [{"text": " b"}],
        [{"functionCall": {"name": "f", "args": {"x": 2}, "id": "g1"}}],
    ]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == 3
    assert {chunk["modelVersion"] for chunk in chunks} == {"gemini-x"}
    array = (await client.post(f"{up.root_url}{GEMINI}", json={})).json()
    assert array == chunks
    whole = (
        await client.post(f"{up.root_url}/v1beta/models/gemini-x:generateContent", json={})
    ).json()
    assert whole["candidates"][0]["content"]["parts"] == [
        {"text": "a b"},
        {"functionCall": {"name": "f", "args": {"x": 2}, "id": "g1"}},
    ]


async def test_gemini_errors(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.enqueue(Script(status=429), Script(tokens=3, fault="error_event", error_type="UNAVAILABLE"))
    limited = await client.post(f"{up.root_url}{GEMINI}?alt=sse", json={})
    assert (limited.status_code, limited.json()) == (
        429,
        {"error": {"code": 429, "message": "fake upstream error", "status": "RESOURCE_EXHAUSTED"}},
    )
    stream = await client.post(f"{up.root_url}{GEMINI}?alt=sse", json={})
    assert sse_events(stream.text)[-1][1] == {
        "error": {"code": 503, "message": "fake upstream error", "status": "UNAVAILABLE"}
    }


async def test_ollama_stream_and_object(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(
        text="x y", tool_calls=(FakeToolCall("f", '{"k": "v"}'),), finish_reason="length"
    )
    streamed = await client.post(f"{up.root_url}/api/chat", json={"model": "llama"})
    assert streamed.headers["content-type"] == "application/x-ndjson"
    lines = ndjson(streamed.text)
    assert [line["message"]["content"] for line in lines[:2]] == ["x", " y"]
    assert lines[2]["message"]["tool_calls"] == [
        {"function": {"name": "f", "arguments": {"k": "v"}}}
    ]
    assert lines[-1]["done"] and lines[-1]["done_reason"] == "length"
    assert (lines[-1]["prompt_eval_count"], lines[-1]["eval_count"]) == (11, 3)
    assert not any(line["done"] for line in lines[:-1])
    whole = await client.post(f"{up.root_url}/api/chat", json={"model": "llama", "stream": False})
    assert whole.headers["content-type"] == "application/json"
    assert whole.json()["message"]["content"] == "x y" and whole.json()["done"] is True


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("error_event", lambda lines: lines[-1] == '{"error": "fake upstream error"}'),
        ("invalid_json", lambda lines: "{not json" in lines),
        ("malformed_sse", lambda lines: "" in lines),
        ("no_done", lambda lines: '"done": true' not in lines[-1]),
    ],
)
async def test_ollama_faults(
    up: FakeUpstream, client: httpx.AsyncClient, fault: str, check: Any
) -> None:
    up.script = Script(tokens=3).with_overrides({"fault": fault, "crlf": True})
    response = await client.post(f"{up.root_url}/api/chat", json={})
    lines = response.text.split("\r\n")[:-1]
    assert check(lines), lines


async def test_ollama_error_status(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(status=404, error_message="model not found")
    response = await client.post(f"{up.root_url}/api/chat", json={})
    assert (response.status_code, response.json()) == (404, {"error": "model not found"})


async def test_embeddings(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    body = {"model": "emb", "input": ["one two", "three"], "dimensions": 5}
    document = (await client.post(f"{up.base_url}/embeddings", json=body)).json()
    assert document["model"] == "emb" and document["object"] == "list"
    assert [item["index"] for item in document["data"]] == [0, 1]
    vectors = [item["embedding"] for item in document["data"]]
    assert all(len(vector) == 5 for vector in vectors)
    assert all(math.isclose(sum(x * x for x in vector), 1.0) for vector in vectors)
    assert vectors[0] != vectors[1]
    again = (await client.post(f"{up.base_url}/embeddings", json=body)).json()
    assert [item["embedding"] for item in again["data"]] == vectors
    assert document["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert vectors[0] == embedding_vector("one two", 5)


@pytest.mark.parametrize(
    ("given", "count", "tokens"),
    [("single", 1, 1), ([1, 2, 3], 1, 3), ([[1, 2], [3]], 2, 3), ([], 0, 0)],
)
async def test_embedding_input_forms(
    up: FakeUpstream, client: httpx.AsyncClient, given: Any, count: int, tokens: int
) -> None:
    body = {"input": given, "encoding_format": "base64"}
    document = (await client.post(f"{up.base_url}/embeddings", json=body)).json()
    assert len(document["data"]) == count
    assert document["usage"]["prompt_tokens"] == tokens
    for item in document["data"]:
        packed = base64.b64decode(item["embedding"])
        assert len(struct.unpack(f"<{len(packed) // 4}f", packed)) == 8


async def test_whole_answer_cut_half_way(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(fault="close_mid_stream")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(f"{up.base_url}/embeddings", json={"input": "x"})
    record = await up.wait_closed(0)
    assert record.close_cause == "server_close"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/responses"),
        ("GET", "/api/chat"),
        ("POST", "/v1beta/models/m:countTokens"),
        ("POST", "/v1beta/models/a/b:generateContent"),
        ("POST", "/api/generate"),
    ],
)
async def test_unknown_routes(
    up: FakeUpstream, client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, up.root_url + path, json={})
    assert response.status_code == 404
