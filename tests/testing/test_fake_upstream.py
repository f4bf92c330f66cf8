from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from typing import Any

import httpx
import pytest
import trio

from gateway.testing import (
    FakeToolCall,
    FakeUpstream,
    Script,
    open_fake_upstream,
    serve_fake_upstream,
)
from gateway.testing.fake_upstream_render import openai_stream
from gateway.testing.fake_upstream_script import Close, Hang, Send, Sleep


@pytest.fixture
async def up() -> Any:
    async with open_fake_upstream() as upstream:
        yield upstream


@pytest.fixture
async def client() -> Any:
    async with httpx.AsyncClient() as http:
        yield http


def sse_data(body: str) -> list[Any]:
    """The data of every event, JSON-decoded except ``[DONE]``."""
    found = []
    for line in body.splitlines():
        if line.startswith("data: "):
            data = line[6:]
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


async def test_models(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    response = await client.get(f"{up.base_url}/models")
    assert response.status_code == 200
    assert response.json()["data"][0]["id"] == "fake"


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("GET", "/chat/completions")])
async def test_not_found(
    up: FakeUpstream, client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, up.base_url + path)
    assert response.status_code == 404


async def test_openai_json_answer(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(text="hi there", tool_calls=(FakeToolCall("f", '{"a": 1}'),))
    response = await client.post(f"{up.base_url}/chat/completions", json={"model": "m1"})
    document = response.json()
    assert document["model"] == "m1"
    assert document["choices"][0]["message"]["content"] == "hi there"
    assert document["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "f"
    assert document["choices"][0]["finish_reason"] == "tool_calls"
    assert document["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


async def test_anthropic_json_answer(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(text="yo", tool_calls=(FakeToolCall("f", '{"a": 1}'),))
    response = await client.post(f"{up.base_url}/messages", json={"model": "c"})
    document = response.json()
    assert [block["type"] for block in document["content"]] == ["text", "tool_use"]
    assert document["content"][1]["input"] == {"a": 1}
    assert document["stop_reason"] == "tool_use"


@pytest.mark.parametrize("include", [None, False, True])
async def test_openai_usage_chunk_follows_stream_options(
    up: FakeUpstream, client: httpx.AsyncClient, include: bool | None
) -> None:
    body: dict[str, Any] = {"stream": True}
    if include is not None:
        body["stream_options"] = {"include_usage": include}
    response = await client.post(f"{up.base_url}/chat/completions", json=body)
    assert response.headers["content-type"] == "text/event-stream"
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    assert ("usage" in events[-2]) is bool(include)
    text = "".join(
        e["choices"][0]["delta"].get("content", "")
        for e in events
        if e != "[DONE]" and e["choices"]
    )
    assert text == "w0 w1 w2 w3 w4"


async def test_per_request_overrides(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    url = f"{up.base_url}/chat/completions"
    by_header = await client.post(url, json={}, headers={"x-fake": '{"text": "from header"}'})
    by_body = await client.post(
        url, json={"fake": {"text": "from body", "tool_calls": [{"name": "g"}]}}
    )
    assert by_header.json()["choices"][0]["message"]["content"] == "from header"
    assert by_body.json()["choices"][0]["message"]["content"] == "from body"
    assert up.requests[1].script.tool_calls == (FakeToolCall("g"),)


@pytest.mark.parametrize("fake", ['{"nope": 1}', '{"fault": "gremlins"}', "[1]", "{bad"])
async def test_bad_overrides_are_400(
    up: FakeUpstream, client: httpx.AsyncClient, fake: str
) -> None:
    response = await client.post(f"{up.base_url}/messages", json={}, headers={"x-fake": fake})
    assert response.status_code == 400
    assert "bad fake knobs" in response.json()["error"]["message"]


async def test_queue_then_default(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.script = Script(text="default")
    up.enqueue(Script(text="first"), Script(text="second"))
    url = f"{up.base_url}/chat/completions"
    texts = [
        (await client.post(url, json={})).json()["choices"][0]["message"]["content"]
        for _ in range(3)
    ]
    assert texts == ["first", "second", "default"]


async def test_error_answers(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.enqueue(
        Script(status=429, retry_after="3"),
        Script(status=502, error_content_type="text/html"),
        Script(status=500, error_body="oops", error_content_type="text/plain"),
    )
    url = f"{up.base_url}/messages"
    limited = await client.post(url, json={})
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "3")
    assert limited.json() == {
        "type": "error",
        "error": {"type": "api_error", "message": "fake upstream error"},
    }
    html = await client.post(url, json={})
    assert html.status_code == 502 and html.text.startswith("<html>")
    plain = await client.post(url, json={})
    assert (plain.status_code, plain.text, plain.headers["content-type"]) == (
        500,
        "oops",
        "text/plain",
    )


async def test_event_log_of_a_stream(up: FakeUpstream, client: httpx.AsyncClient) -> None:
    up.log_chunks = True
    await client.post(f"{up.base_url}/messages", json={"stream": True, "messages": []})
    record = await up.wait_request(0)
    await record.finished.wait()
    names = [entry.name for entry in record.events]
    assert names[:3] == ["received", "headers_sent", "first_byte"]
    assert names[-1] == "response_end"
    assert names.count("chunk") > 5
    times = [entry.at for entry in record.events]
    assert times == sorted(times)
    assert record.headers["content-type"] == "application/json"
    assert record.body == {"stream": True, "messages": []}
    assert up.log[: len(names)] == record.events


async def test_keep_alive_and_client_close(up: FakeUpstream) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(2):
            await http.get(f"{up.base_url}/models")
    record = await up.wait_closed(1)
    assert [r.connection for r in up.requests] == [1, 1]
    assert record.close_cause == "client_eof"
    assert up.requests[0].closed.is_set()


async def raw_exchange(up: FakeUpstream, body: dict[str, Any]) -> trio.SocketStream:
    """Send one streaming request on a raw socket and return once the headers came back."""
    stream = await trio.open_tcp_stream("127.0.0.1", up.port)
    data = json.dumps(body).encode()
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
    await stream.send_all(head.encode() + data)
    received = b""
    while b"\r\n\r\n" not in received:
        received += await stream.receive_some()
    return stream


async def test_client_leaving_while_the_fake_sleeps_is_seen_at_once(up: FakeUpstream) -> None:
    stream = await raw_exchange(up, {"stream": True, "fake": {"token_delay": 3600, "tokens": 3}})
    record = await up.wait_request(0)
    await record.wait_for("first_byte")
    await stream.aclose()
    await record.finished.wait()
    # Unread bytes in the client's buffer turn its close into a reset.
    assert record.close_cause in ("client_eof", "client_reset")
    assert [entry.name for entry in record.events][-2:] == ["closed", "aborted"]


async def test_reset_mid_stream(up: FakeUpstream) -> None:
    stream = await raw_exchange(up, {"stream": True, "fake": {"fault": "reset_mid_stream"}})
    record = await up.wait_closed(0)
    assert record.close_cause == "server_reset"
    with pytest.raises(trio.BrokenResourceError):
        while await stream.receive_some():
            pass
    await stream.aclose()


async def test_broken_request_is_hung_up(up: FakeUpstream) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", up.port)
    await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
    assert await stream.receive_some() == b""
    await stream.aclose()
    assert up.requests == []


async def test_serve_with_nursery_start() -> None:
    async with trio.open_nursery() as nursery:
        upstream: FakeUpstream = await nursery.start(serve_fake_upstream, Script(text="x"))
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{upstream.base_url}/chat/completions", json={})
        assert response.json()["choices"][0]["message"]["content"] == "x"
        nursery.cancel_scope.cancel()


def test_script_pieces_and_tokens() -> None:
    script = Script(text="  Hello,\n wide  world ")
    assert "".join(script.pieces()) == script.text
    assert Script(tokens=3).pieces() == ["w0", " w1", " w2"]
    assert Script(tokens=0, tool_calls=(FakeToolCall("f"),)).completion_tokens == 1


def test_stream_steps_place_delays_and_faults() -> None:
    steps = list(openai_stream(Script(tokens=3, first_token_delay=2, token_delay=1), {}))
    kinds = [type(step).__name__ for step in steps]
    assert kinds == ["Sleep", "Send", "Send", "Sleep", "Send", "Sleep", "Send", "Send", "Send"]
    assert steps[0] == Sleep(2)
    assert isinstance(steps[-1], Send) and steps[-1].data == b"data: [DONE]\n\n"
    hang = list(openai_stream(Script(tokens=3, fault="hang_mid_stream", fault_after=2), {}))
    assert isinstance(hang[-1], Hang) and sum(isinstance(s, Send) and s.content for s in hang) == 2
    late = list(openai_stream(Script(tokens=2, fault="close_mid_stream", fault_after=99), {}))
    assert isinstance(late[-1], Close) and sum(isinstance(s, Send) and s.content for s in late) == 2
    junk = list(openai_stream(Script(tokens=2, fault="invalid_json", fault_after=1), {}))
    datas = [step.data for step in junk if isinstance(step, Send)]
    assert datas[2] == b"data: {not json\n\n" and datas[-1] == b"data: [DONE]\n\n"


def test_a_long_stream_is_made_as_it_is_sent() -> None:
    steps = openai_stream(Script(tokens=10**9), {"model": "m"})  # a list would not fit in memory
    first = [next(iter(steps)) for _ in range(3)]
    assert all(isinstance(step, Send) for step in first)
    assert Script(tokens=10**9).completion_tokens == 10**9


async def test_command_line() -> None:
    command = [
        sys.executable,
        "-m",
        "gateway.testing.fake_upstream",
        "--port",
        "0",
        "--tokens",
        "3",
    ]
    async with trio.open_nursery() as nursery:
        run = partial(trio.run_process, command, stdout=subprocess.PIPE, check=False)
        process: trio.Process = await nursery.start(run)
        assert process.stdout is not None
        line = b""
        with trio.fail_after(10):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(1)
        base_url = line.decode().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{base_url}/chat/completions", json={"stream": True})
        assert sse_data(response.text)[-1] == "[DONE]"
        process.terminate()
