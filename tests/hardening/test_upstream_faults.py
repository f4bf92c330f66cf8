"""Upstream faults through the gateway, for both upstream APIs and both client modes: each fault
yields its status (before the first token) or its SSE error (after it) within the configured
timeout, the stateful transcript says what happened (``error`` with the partial reply, or
``complete``), and nothing is left: the upstream request is over (closed by the gateway when it
had to abandon it), no run is active, no lane is held."""

from __future__ import annotations

import gc
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from gateway.sessions.sqlite import SQLiteTranscripts
from gateway.testing import FakeUpstream, Script, open_fake_upstream
from tests.hardening.support import assert_error_shape, assert_no_leak, sse_events
from tests.harness import AUTH, Server, start_server
from tests.rawhttp import open_request

FIRST_BYTE = 0.3
IDLE = 0.3
SLACK = 0.7  # how late after its deadline a timeout may be reported, on a loaded machine
APIS = ["openai-completions", "anthropic-messages"]


@dataclass(frozen=True)
class Fault:
    """A fault and what the client must see. ``status``: the HTTP status when the fault strikes
    before the first token (both modes) or for a non-streaming client; ``None`` means the run
    completes. ``partial``: the reply text before the fault (streamed, then an SSE error)."""

    script: Script
    status: int | None
    code: str | None = None
    partial: str | None = None
    deadline: float = 0.0  # the configured timeout that decides, if one does
    hangs_up: bool = False  # the gateway must close the upstream connection itself


FAULTS = {
    "hang_before_headers": Fault(
        Script(fault="hang_before_headers"), 504, "timeout", deadline=FIRST_BYTE, hangs_up=True
    ),
    "close_before_headers": Fault(Script(fault="close_before_headers"), 502, "upstream"),
    "hang_mid_stream": Fault(
        Script(fault="hang_mid_stream", fault_after=2),
        504,
        "timeout",
        partial="w0 w1",
        deadline=IDLE,
        hangs_up=True,
    ),
    "reset_mid_stream": Fault(
        Script(fault="reset_mid_stream", fault_after=2), 502, "upstream", partial="w0 w1"
    ),
    "close_mid_stream": Fault(
        Script(fault="close_mid_stream", fault_after=2), 502, "upstream", partial="w0 w1"
    ),
    "malformed_sse": Fault(Script(fault="malformed_sse", fault_after=2), None),
    "invalid_json_first": Fault(Script(fault="invalid_json", fault_after=0), 502, "protocol"),
    "invalid_json_mid_stream": Fault(
        Script(fault="invalid_json", fault_after=2), 502, "protocol", partial="w0 w1"
    ),
    "error_event_mid_stream": Fault(
        Script(fault="error_event", fault_after=2), 502, "upstream", partial="w0 w1"
    ),
    "html_502_page": Fault(Script(status=502, error_content_type="text/html"), 502, "upstream"),
    "no_done": Fault(Script(fault="no_done"), None),
}
FULL_TEXT = "w0 w1 w2 w3 w4"


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream() as upstream:
        yield upstream


async def serve(
    nursery: trio.Nursery, up: FakeUpstream, api: str, tmp_path: Path
) -> tuple[Server, SQLiteTranscripts]:
    provider = {
        "baseUrl": up.base_url,
        "api": api,
        "firstByteTimeoutSeconds": FIRST_BYTE,
        "idleTimeoutSeconds": IDLE,
    }
    config = {
        "models": {"providers": {"fake": provider}},
        "agents": {"defaults": {"model": "fake/m"}},
    }
    store = SQLiteTranscripts(tmp_path / "gateway")
    return await start_server(nursery, config, store=store), store


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("name", list(FAULTS))
async def test_upstream_fault(
    nursery: trio.Nursery, up: FakeUpstream, tmp_path: Path, api: str, name: str
) -> None:
    fault = FAULTS[name]
    server, _ = await serve(nursery, up, api, tmp_path)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=10) as client:
        for index, stream in enumerate([True, False]):
            user = f"{name}-{'stream' if stream else 'plain'}"
            up.enqueue(fault.script)
            body = {"messages": [{"role": "user", "content": "hi"}], "stream": stream}
            started = time.monotonic()
            response = await client.post("/v1/chat/completions", json={**body, "user": user})
            elapsed = time.monotonic() - started
            check_answer(fault, stream, response)
            assert fault.deadline <= elapsed < fault.deadline + SLACK, elapsed
            # Nothing left behind: the upstream request is over (hung up by the gateway when
            # it gave up on it), no run, no lane.
            record = up.requests[index]
            with trio.fail_after(2):
                await record.finished.wait()
                if fault.hangs_up:
                    await record.closed.wait()
                    assert record.close_cause in ("client_eof", "client_reset")
                await server.gateway.runtime.wait_idle()
            assert server.gateway.runtime.statistics().active_runs == 0
            lanes = server.gateway.runtime.admission.statistics()
            assert (lanes.sessions_held, lanes.slots_held, lanes.slots_waiting) == (0, 0, 0)
            # The transcript tells the same story.
            page = await client.get(f"/sessions/agent:main:openai-user:{user}/history")
            check_transcript(fault, page.json()["messages"])


def check_answer(fault: Fault, stream: bool, response: httpx.Response) -> None:
    assert "<html" not in response.text.lower()
    assert_no_leak(response.content)
    if fault.status is None:  # completes
        assert response.status_code == 200, response.text
        if stream:
            events = sse_events(response.content)
            assert events[-1] == "[DONE]" and not any("error" in e for e in events[:-1])
            assert streamed_text(events) == FULL_TEXT
        else:
            assert response.json()["choices"][0]["message"]["content"] == FULL_TEXT
        return
    if stream and fault.partial is not None:
        # After the first token: the stream started, the error is its last event.
        assert response.status_code == 200, response.text
        events = sse_events(response.content)
        assert events[-1] == "[DONE]"
        assert_error_shape(events[-2])
        assert events[-2]["error"]["code"] == fault.code
        assert streamed_text(events[:-2]) == fault.partial
        return
    assert response.status_code == fault.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert_error_shape(response.json())
    assert response.json()["error"]["code"] == fault.code


def streamed_text(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if e != "[DONE]" and e.get("choices")
    )


def check_transcript(fault: Fault, messages: list[dict[str, Any]]) -> None:
    status = "complete" if fault.status is None else "error"
    assert messages[0]["role"] == "user" and messages[0]["content"] == "hi"
    assert {m["status"] for m in messages} == {status}, messages
    reply = FULL_TEXT if fault.status is None else fault.partial
    if reply is None:
        assert len(messages) == 1, messages  # failed before any output: the user turn only
    else:
        assert len(messages) == 2 and messages[1]["role"] == "assistant", messages
        assert messages[1]["content"] == reply


async def test_cancel_while_the_upstream_request_body_is_written(nursery: trio.Nursery) -> None:
    """A run cancelled while its upstream request body is being written closes the upstream
    connection and leaves nothing for the garbage collector to finalize."""
    # An "upstream" that accepts and never reads: the gateway's body write blocks.
    accepted: list[trio.SocketStream] = []
    connected = trio.Event()

    async def never_read(stream: trio.SocketStream) -> None:
        accepted.append(stream)
        connected.set()
        await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await nursery.start(trio.serve_listeners, never_read, listeners)
    config = {
        "models": {"providers": {"stuck": {"baseUrl": f"http://127.0.0.1:{port}/v1"}}},
        "agents": {"defaults": {"model": "stuck/m"}},
    }
    server = await start_server(nursery, config)
    body = {"messages": [{"role": "user", "content": "x" * 8_000_000}]}  # beyond socket buffers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = await open_request(server.url, body)
        with trio.fail_after(5):
            await connected.wait()
            await trio.testing.wait_all_tasks_blocked(0.05)  # the write is stuck
        await client.aclose()
        with trio.fail_after(2):
            await server.gateway.runtime.wait_idle()  # cancelled at once: that part holds
            # The upstream connection was closed by the gateway.
            while await accepted[0].receive_some(1 << 20):
                pass
        gc.collect()
    leaked = [w for w in caught if "was garbage collected" in str(w.message)]
    assert not leaked, [str(w.message) for w in leaked]


# A model's output with a lone surrogate escape ("\ud800", which JSON allows): the text the
# gateway relays then holds a code point no UTF-8 encoder takes.

SURROGATE_TEXT = "a\ud800b c"


async def test_lone_surrogate_from_the_upstream_in_a_json_answer(
    nursery: trio.Nursery, up: FakeUpstream, tmp_path: Path
) -> None:
    """Non-streaming, stateless: the lone surrogate arrives as U+FFFD (the response used to fail
    with a 500)."""
    server, _ = await serve(nursery, up, "openai-completions", tmp_path)
    up.enqueue(Script(text=SURROGATE_TEXT))
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "a\ufffdb c"


async def test_lone_surrogate_from_the_upstream_in_a_stream(
    nursery: trio.Nursery, up: FakeUpstream, tmp_path: Path
) -> None:
    server, _ = await serve(nursery, up, "openai-completions", tmp_path)
    up.enqueue(Script(text=SURROGATE_TEXT))
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        response = await client.post("/v1/chat/completions", json=body)
    events = sse_events(response.content)
    assert events[-1] == "[DONE]"


async def test_lone_surrogate_from_the_upstream_is_recorded(
    nursery: trio.Nursery, up: FakeUpstream, tmp_path: Path
) -> None:
    server, _ = await serve(nursery, up, "openai-completions", tmp_path)
    up.enqueue(Script(text=SURROGATE_TEXT))
    body = {"messages": [{"role": "user", "content": "hi"}], "user": "s"}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        page = await client.get("/sessions/agent:main:openai-user:s/history")
    assert page.status_code == 200, page.text
    assert [m["status"] for m in page.json()["messages"]] == ["complete", "complete"]
