"""The Responses event stream and response object, without sockets."""

from __future__ import annotations

import json
from typing import Any

from gateway.agents.events import AbortReason, RunFailed
from gateway.errors import GatewayError
from gateway.providers.base import ProviderError
from gateway.providers.events import Finish, TextDelta, ToolCallDelta, Usage
from gateway.responses.stream import DONE, ResponseStream


def describe(**fields: Any) -> dict[str, Any]:
    return {"id": "resp_1", "object": "response", **fields}


def events(data: bytes) -> list[dict[str, Any]]:
    out = []
    for block in data.decode().strip().split("\n\n"):
        if block == "data: [DONE]":
            continue
        kind, line = block.split("\n")
        document = json.loads(line.removeprefix("data: "))
        assert kind == f"event: {document['type']}"
        out.append(document)
    return out


def run(stream: ResponseStream, *run_events: Any) -> list[dict[str, Any]]:
    data = stream.start() + b"".join(stream.feed(e) for e in run_events) + stream.tail()
    assert data.endswith(b"\n\n" + DONE)
    found = events(data)
    assert [e["sequence_number"] for e in found] == list(range(len(found)))
    return found


def test_text_then_a_call_then_completed() -> None:
    stream = ResponseStream(describe)
    found = run(
        stream,
        TextDelta("Checking "),
        ToolCallDelta(0, "", id="call_1", name="look"),
        ToolCallDelta(0, '{"q":"x"}'),
        Usage(3, 4),
        Finish("tool_calls"),
    )
    assert [e["type"] for e in found] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    final = found[-1]["response"]
    assert final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == ["message", "function_call"]
    assert final["output"][1]["arguments"] == '{"q":"x"}'
    assert found[9]["output_index"] == 1 and found[4]["output_index"] == 0
    assert final["usage"]["total_tokens"] == 7


def test_limit_is_incomplete_and_failure_is_failed() -> None:
    found = run(ResponseStream(describe), TextDelta("a"), Finish("length"))
    assert found[-1]["type"] == "response.incomplete"
    assert found[-1]["response"]["incomplete"] == "max_output_tokens"  # what describe() got
    failed = run(
        ResponseStream(describe),
        TextDelta("a"),
        RunFailed(ProviderError("rate_limited", "slow")),
    )
    assert failed[-1]["type"] == "response.failed"
    response = failed[-1]["response"]
    assert response["status"] == "failed"
    assert response["error"] == {"code": "rate_limit_exceeded", "message": "slow"}
    assert response["output"][0]["status"] == "incomplete"


def test_the_end_waits_for_the_run_which_may_still_fail() -> None:
    stream = ResponseStream(describe)
    assert b"response.completed" not in stream.start() + stream.feed(TextDelta("a"))
    assert stream.feed(Finish("stop")) == b""
    failed = stream.feed(RunFailed(GatewayError("The session store is unavailable.")))
    assert b"response.failed" in failed and b"response.completed" not in failed
    assert stream.tail() == b""


def test_an_abort_is_cancelled() -> None:
    found = run(
        ResponseStream(describe),
        RunFailed(GatewayError("The server is shutting down."), AbortReason.SHUTDOWN),
    )
    assert found[-1]["response"]["status"] == "cancelled"
    assert found[-1]["response"]["error"]["code"] == "shutdown"


def test_silent_streams_build_the_response_only() -> None:
    stream = ResponseStream(describe, silent=True)
    assert stream.start() == b""
    assert stream.feed(TextDelta("x")) == b"" and stream.feed(Finish("stop")) == b""
    assert not stream.finished  # until the run has ended
    assert stream.tail() == b""
    assert stream.finished and stream.response()["output"][0]["content"][0]["text"] == "x"


def test_a_run_that_ends_without_its_last_event_fails() -> None:
    stream = ResponseStream(describe)
    stream.start()
    stream.feed(TextDelta("x"))
    tail = events(stream.tail())
    assert tail[-1]["response"]["status"] == "failed"
    assert stream.tail() == b""
