"""Fuzzing ``POST /v1/chat/completions`` (and the listener under it) with Hypothesis, through
one real server per test: random and mutated bodies, random headers, random request bytes.

Properties, for every example: never a 5xx, never a stack trace; every answer from the gateway
carries the security headers and is either a chat completion (JSON or an SSE stream ending in
``[DONE]``), the plain-text 404, or an OpenAI-shaped error; nothing is logged at ERROR; and the
server keeps answering (``/health`` after every batch and at the end).

``GATEWAY_FUZZ_EXAMPLES=5000`` runs more examples than the CI default.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import strategies as st

from gateway.sessions.sqlite import SQLiteTranscripts
from tests.hardening.strategies import body_bytes, header_lists
from tests.hardening.support import (
    RawResponse,
    assert_no_leak,
    check_gateway_response,
    exchange,
    fuzz_examples,
    open_stream,
    request_bytes,
    run_examples,
    watch_errors,
)
from tests.harness import TOKEN, Server, start_server

MAX_BODY = 512 * 1024
CONFIG = {
    "gateway": {
        "http": {"endpoints": {"chatCompletions": {"maxBodyBytes": MAX_BODY}}},
    },
    "agents": {"defaults": {"historyLimit": 4}, "list": [{"id": "main"}, {"id": "ops"}]},
}
AUTH = (b"Authorization", f"Bearer {TOKEN}".encode())
JSON = (b"Content-Type", b"application/json")
BATCH = 25


async def serve(nursery: trio.Nursery, tmp_path: Path) -> Server:
    # The real store: keys and transcripts made of odd strings must survive SQLite too.
    store = SQLiteTranscripts(tmp_path / "gateway")
    return await start_server(nursery, CONFIG, store=store)


class Probe:
    """Counts answers and checks, every ``BATCH`` examples, that the server still answers."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.statuses: Counter[int] = Counter()
        self.count = 0

    async def seen(self, response: RawResponse | None) -> None:
        self.statuses[response.status if response else 0] += 1
        self.count += 1
        if self.count % BATCH == 0:
            await self.assert_alive()

    async def assert_alive(self) -> None:
        with trio.fail_after(5):
            health = await exchange(
                self.server.url, request_bytes("GET", "/health", []), method="GET"
            )
        assert health is not None and health.status == 200
        assert health.json() == {"ok": True, "status": "live"}


async def test_fuzz_chat_bodies(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await serve(nursery, tmp_path)
    probe = Probe(server)
    with watch_errors() as errors:

        async def check(body: bytes) -> None:
            data = request_bytes("POST", "/v1/chat/completions", [AUTH, JSON], body)
            with trio.fail_after(10):
                response = await exchange(server.url, data)
            assert response is not None, "connection closed without an answer"
            if len(body) > MAX_BODY:
                assert response.status == 413
            check_gateway_response(response)
            errors.assert_none()
            await probe.seen(response)

        await run_examples(body_bytes(), check, examples=fuzz_examples(300))
        await probe.assert_alive()
    # The fuzz reached both sides: runs that completed and requests refused.
    assert probe.statuses[200] > 0 and probe.statuses[400] > 0, probe.statuses
    assert server.gateway.runtime.statistics().active_runs == 0


async def test_fuzz_request_headers(nursery: trio.Nursery, tmp_path: Path) -> None:
    server = await serve(nursery, tmp_path)
    probe = Probe(server)
    chat = st.tuples(st.just("POST"), st.sampled_from(["/v1/chat/completions"]))
    elsewhere = st.tuples(
        st.sampled_from(["POST", "GET", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"]),
        st.sampled_from(
            [
                "/v1/chat/completions",
                "/v1/chat/completions?x=1",
                "/v1/chat/completions/",
                "/v1/models",
                "/v1/models/openclaw%2Fmain",
                "/sessions/k1/history",
                "/sessions/k1/history?limit=abc",
                "/sessions/%00/kill",
                "/health",
                "/nowhere",
                "//v1/chat/completions",
                "/v1/%E2%82%AC",
            ]
        ),
    )
    targets = st.one_of(chat, chat, chat, elsewhere)
    bodies = st.sampled_from(
        [
            b'{"messages": [{"role": "user", "content": "hello"}]}',
            b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}',
            b'{"messages": [{"role": "user", "content": "hi"}], "user": "Ann"}',
            b"{}",
            b"",
        ]
    )
    examples = st.tuples(targets, header_lists(), bodies)

    with watch_errors() as errors:

        async def check(example: tuple[tuple[str, str], list[tuple[bytes, bytes]], bytes]) -> None:
            (method, path), headers, body = example
            data = request_bytes(method, path, headers, body)
            with trio.fail_after(10):
                response = await exchange(server.url, data, method=method)
            assert response is not None, "connection closed without an answer"
            if "x-request-id" in response.headers:
                check_gateway_response(response, chat=path.startswith("/v1/chat/completions"))
            else:
                # Refused by Hypercorn's HTTP parser (a header h11 will not take, or too
                # large): a 4xx, never the app's problem.
                assert 400 <= response.status < 500, response
                assert_no_leak(response.body)
            errors.assert_none()
            await probe.seen(response)

        await run_examples(examples, check, examples=fuzz_examples(250))
        await probe.assert_alive()
    assert {200, 401, 400} <= set(probe.statuses), probe.statuses


async def test_fuzz_raw_bytes(nursery: trio.Nursery, tmp_path: Path) -> None:
    """Bytes that are barely or not at all HTTP: the server answers 4xx or hangs up."""
    server = await serve(nursery, tmp_path)
    probe = Probe(server)
    valid = request_bytes(
        "POST",
        "/v1/chat/completions",
        [AUTH, JSON],
        b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}',
    )

    @st.composite
    def mutations(draw: st.DrawFn) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 6))):
            at = draw(st.integers(0, len(data)))
            action = draw(st.integers(0, 3))
            if action == 0:
                data[at:at] = draw(st.binary(min_size=1, max_size=20))
            elif action == 1:
                del data[at : at + draw(st.integers(1, 30))]
            elif action == 2 and at < len(data):
                data[at] = draw(st.integers(0, 255))
            else:
                data[at:at] = draw(
                    st.sampled_from(
                        [
                            b"\r\n",
                            b"\r\n\r\n",
                            b"Transfer-Encoding: chunked\r\n",
                            b"Content-Length: 99999999999999999999\r\n",
                            b"Content-Length: -1\r\n",
                            b"\n",
                            b" HTTP/1.1",
                            b"\x00",
                        ]
                    )
                )
        return bytes(data)

    raw = st.one_of(
        # Not empty: a connection closed without a byte is held for Hypercorn's keep-alive
        # timeout (see test_request_limits), 5 s per example.
        st.binary(min_size=1, max_size=600),
        mutations(),
        st.sampled_from(
            [
                b"GET / HTTP/1.1\r\n\r\n",
                b"GET /health HTTP/1.0\r\n\r\n",
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
                valid + valid,  # pipelined
                valid[:-5],
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
            ]
        ),
    )

    with watch_errors() as errors:

        async def check(data: bytes) -> None:
            received = bytearray()
            with trio.fail_after(10):
                async with await open_stream(server.url) as stream:
                    try:
                        await stream.send_all(data)
                        await stream.send_eof()
                    except trio.BrokenResourceError:
                        pass
                    while True:
                        try:
                            chunk = await stream.receive_some(65536)
                        except trio.BrokenResourceError:
                            break
                        if not chunk:
                            break
                        received += chunk
            for status in _statuses(bytes(received)):
                assert status < 500, bytes(received[:500])
            assert_no_leak(bytes(received))
            errors.assert_none()
            await probe.seen(None)

        await run_examples(raw, check, examples=fuzz_examples(250))
        await probe.assert_alive()
    assert server.gateway.runtime.statistics().active_runs == 0


def _statuses(data: bytes) -> list[int]:
    out: list[Any] = []
    for line in data.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 ") and line[9:12].isdigit():
            out.append(int(line[9:12]))
    return out


# What the fuzzing found (fixed in gateway/http/chat.py and common.py), pinned.

USER_HI = b'{"messages": [{"role": "user", "content": "hi"}]'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            b'{"messages": [{"role": "user", "content": "\\ud800 hi"}]}',
            "Invalid JSON body: a string contains an unpaired surrogate.",
            id="lone-surrogate",  # was: 500 (the JSON response could not be encoded)
        ),
        pytest.param(
            b'{"messages": [{"role": "user", "content": "\\udfff"}], "stream": true}',
            "Invalid JSON body: a string contains an unpaired surrogate.",
            id="lone-surrogate-streaming",  # was: a 200 stream cut mid-body
        ),
        pytest.param(
            USER_HI + b', "model": "openclaw:\\ud800"}',
            "Invalid JSON body: a string contains an unpaired surrogate.",
            id="lone-surrogate-in-the-error-message",  # was: 500 writing the 400
        ),
        pytest.param(
            USER_HI + b', "tools": [{"type": "function", "function": {"\\udc00": 1}}]}',
            "Invalid JSON body: a string contains an unpaired surrogate.",
            id="lone-surrogate-in-a-key",
        ),
        pytest.param(
            USER_HI + b', "max_tokens": 1' + b"0" * 5000 + b"}",
            "Invalid JSON body: Exceeds the limit (4300 digits)",
            id="5000-digit-integer",  # was: 500 (ValueError)
        ),
        pytest.param(
            b"[" * 100_000 + b"]" * 100_000,
            "Invalid JSON body: nested too deeply.",
            id="deep-nesting",  # was: 500 (RecursionError)
        ),
    ],
)
async def test_bodies_the_fuzzing_found(
    nursery: trio.Nursery, tmp_path: Path, body: bytes, message: str
) -> None:
    server = await serve(nursery, tmp_path)
    with watch_errors() as errors:
        response = await exchange(
            server.url, request_bytes("POST", "/v1/chat/completions", [AUTH, JSON], body)
        )
    assert response is not None and response.status == 400, response
    check_gateway_response(response)
    assert response.json()["error"]["message"].startswith(message)
    errors.assert_none()


async def test_a_valid_surrogate_pair_is_one_character(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server = await serve(nursery, tmp_path)
    body = b'{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}'
    response = await exchange(
        server.url, request_bytes("POST", "/v1/chat/completions", [AUTH, JSON], body)
    )
    assert response is not None and response.status == 200
    assert response.json()["choices"][0]["message"]["content"] == "😀"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("user", "header"),
    [
        ("日本", "agent:main:openai-user:%E6%97%A5%E6%9C%AC"),  # was: 500, empty body
        ("x ", "agent:main:openai-user:x%20"),  # a trailing space: was 500
        ("a\u0007b", "agent:main:openai-user:a%07b"),  # a control character: was 500
        ("Ann", "agent:main:openai-user:ann"),  # printable ASCII: as it was
    ],
)
async def test_session_key_header_from_any_user(
    nursery: trio.Nursery, tmp_path: Path, user: str, header: str, stream: bool
) -> None:
    """A ``user`` that cannot go in a header as is comes back percent-encoded, and that value
    works in the history URL."""
    server = await serve(nursery, tmp_path)
    body = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}], "user": user, "stream": stream}
    ).encode()
    response = await exchange(
        server.url, request_bytes("POST", "/v1/chat/completions", [AUTH, JSON], body)
    )
    assert response is not None and response.status == 200, response
    check_gateway_response(response)
    assert response.headers["x-openclaw-session-key"] == header
    history = await exchange(
        server.url, request_bytes("GET", f"/sessions/{header}/history", [AUTH]), method="GET"
    )
    assert history is not None and history.status == 200, history
    assert history.json()["sessionKey"] == f"agent:main:openai-user:{user}".lower()
    assert [m["content"] for m in history.json()["messages"]] == ["hi", "hi"]
