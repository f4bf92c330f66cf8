"""Run events to protocol events, and the ``agent`` final answer. No sockets."""

from __future__ import annotations

import itertools

from gateway.agents.events import (
    AbortReason,
    Finish,
    RunAborted,
    RunFailed,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from gateway.errors import GatewayError
from gateway.providers.base import ProviderError
from gateway.ws.run_events import OutEvent, RunTranslator


def translator() -> RunTranslator:
    clock = itertools.count(1000, 10)
    return RunTranslator("run-1", "agent:main:main", "main", lambda: next(clock))


def kinds(events: list[OutEvent]) -> list[str]:
    out = []
    for e in events:
        detail = e.payload["stream"] if e.event == "agent" else e.payload["state"]
        out.append(f"{e.event}:{detail}")
    return out


def test_a_complete_run() -> None:
    t = translator()
    events = t.start()
    events += t.feed(TextDelta("Hel"))
    events += t.feed(TextDelta(""))  # nothing to say
    events += t.feed(ToolCallDelta(0, id="c", name="f"))  # not shown
    events += t.feed(TextDelta("lo"))
    events += t.feed(Usage(5, 2))
    assert t.feed(Finish("stop")) == []  # said at the run's end, once its turn is recorded
    events += t.end()
    assert kinds(events) == [
        "agent:lifecycle",
        "agent:assistant",
        "chat:delta",
        "agent:assistant",
        "chat:delta",
        "agent:usage",
        "agent:lifecycle",
        "chat:final",
    ]
    agent = [e.payload for e in events if e.event == "agent"]
    assert [a["seq"] for a in agent] == [1, 2, 3, 4, 5]
    # A chat event carries the seq of the agent event it accompanies.
    chat = [e.payload for e in events if e.event == "chat"]
    assert [c["seq"] for c in chat] == [2, 3, 5]
    assert agent[0]["data"] == {"phase": "start", "startedAt": 1000}
    assert agent[2]["data"] == {"text": "Hello", "delta": "lo"}
    assert agent[3]["data"] == {"inputTokens": 5, "outputTokens": 2, "totalTokens": 7}
    assert agent[4]["data"]["phase"] == "end"
    assert agent[4]["data"]["aborted"] is False
    assert agent[4]["data"]["stopReason"] == "stop"
    assert chat[1]["deltaText"] == "lo"
    assert chat[1]["message"]["content"] == [{"type": "text", "text": "Hello"}]
    assert chat[2]["message"]["role"] == "assistant"
    assert chat[2]["usage"] == {"input": 5, "output": 2, "total": 7}
    assert set(agent[1]) == {"runId", "sessionKey", "agentId", "stream", "data", "seq", "ts"}
    assert [e.essential for e in events][-2:] == [True, True]
    assert not any(e.essential for e in events[:-2])
    # The story is over: a late failure changes nothing.
    assert t.feed(RunFailed(RunAborted("late"))) == []
    answer = t.final_answer()
    assert answer.error is None
    assert answer.payload["status"] == "ok"
    assert answer.payload["summary"] == "completed"
    assert answer.payload["result"]["payloads"] == [{"text": "Hello", "mediaUrl": None}]
    meta = answer.payload["result"]["meta"]
    assert meta["aborted"] is False and meta["stopReason"] == "stop"
    assert meta["usage"] == {"input": 5, "output": 2, "total": 7}
    assert meta["durationMs"] > 0


def test_tool_calls_finish_reason() -> None:
    t = translator()
    t.start()
    assert t.feed(Finish("tool_calls")) == []
    events = t.end()
    assert events[0].payload["data"]["stopReason"] == "toolUse"
    assert t.final_answer().payload["result"]["payloads"] == []


def test_a_failure_after_the_model_finished_fails_the_run() -> None:
    t = translator()
    t.start()
    t.feed(TextDelta("Hi"))
    t.feed(Finish("stop"))
    events = t.feed(RunFailed(GatewayError("The session store is unavailable.")))
    assert kinds(events) == ["agent:lifecycle", "chat:error"]
    assert t.end() == []
    assert t.final_answer().error is not None


def test_aborted_by_kill_reports_the_abort_reason() -> None:
    t = translator()
    t.abort_reason = "rpc"
    t.start()
    t.feed(TextDelta("part"))
    events = t.feed(RunFailed(RunAborted("The run was aborted."), AbortReason.KILLED))
    assert kinds(events) == ["chat:aborted", "agent:lifecycle"]
    chat, end = (e.payload for e in events)
    assert chat["stopReason"] == "rpc"
    assert chat["message"]["content"][0]["text"] == "part"
    assert chat["seq"] == end["seq"]
    assert end["data"]["phase"] == "end"
    assert end["data"]["aborted"] is True
    assert end["data"]["status"] == "cancelled"
    answer = t.final_answer()
    assert answer.error is None
    assert answer.payload["summary"] == "aborted"
    assert answer.payload["result"]["meta"]["aborted"] is True
    assert t.abort() == []


def test_cancelled_before_any_text() -> None:
    t = translator()
    t.start()
    [chat, _] = t.abort("aborted")
    assert "message" not in chat.payload
    assert chat.payload["stopReason"] == "aborted"


def test_provider_failure() -> None:
    t = translator()
    t.start()
    error = ProviderError("rate_limited", "slow down", retry_after=2.5)
    events = t.feed(RunFailed(error))
    assert kinds(events) == ["agent:lifecycle", "chat:error"]
    assert events[0].payload["data"]["phase"] == "error"
    assert events[0].payload["data"]["error"] == "slow down"
    assert events[1].payload["errorMessage"] == "slow down"
    answer = t.final_answer()
    assert answer.payload == {"runId": "run-1", "status": "error", "summary": "slow down"}
    assert answer.error is not None
    assert answer.error.shape() == {
        "code": "UNAVAILABLE",
        "message": "slow down",
        "retryable": True,
        "retryAfterMs": 2500,
    }


def test_bad_request_is_not_retryable() -> None:
    t = translator()
    t.start()
    t.feed(RunFailed(ProviderError("bad_request", "no")))
    answer = t.final_answer()
    assert answer.error is not None and answer.error.retryable is False


def test_run_timeout_is_agent_timeout() -> None:
    t = translator()
    t.start()
    timeout = GatewayError("timed out", status=504, type_="timeout_error")
    t.feed(RunFailed(timeout, AbortReason.TIMEOUT))
    assert t.status == "timeout"
    answer = t.final_answer()
    assert answer.error is not None and answer.error.code == "AGENT_TIMEOUT"
    assert answer.payload["status"] == "timeout"
    # A provider's own timeout is an upstream failure, not the run's deadline.
    t = translator()
    t.start()
    t.feed(RunFailed(ProviderError("timeout", "upstream slow")))
    assert t.final_answer().error.code == "UNAVAILABLE"  # type: ignore[union-attr]


def test_a_run_that_ended_without_a_reply() -> None:
    t = translator()
    t.start()
    answer = t.final_answer()
    assert answer.error is not None and answer.error.code == "UNAVAILABLE"


def test_killed_by_shutdown_is_an_abort() -> None:
    t = translator()
    t.start()
    shutdown = GatewayError("The server is shutting down.", status=503, code="shutdown")
    events = t.feed(RunFailed(shutdown, AbortReason.SHUTDOWN))
    assert kinds(events) == ["chat:aborted", "agent:lifecycle"]
    assert events[0].payload["stopReason"] == "shutdown"
    assert t.final_answer().payload["result"]["meta"]["aborted"] is True
