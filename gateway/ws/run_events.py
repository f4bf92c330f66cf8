"""From a run's events to protocol events and the ``agent`` method's final answer. Pure.

One ``RunTranslator`` per run turns each ``RunEvent`` into ``agent`` events (``stream``
``lifecycle`` / ``assistant`` / ``usage``) and ``chat`` events (``state`` ``delta`` / ``final`` /
``aborted`` / ``error``). Every ``agent`` event takes the next number of the run's own ``seq``;
a ``chat`` event carries the ``seq`` of the ``agent`` event it accompanies, as the reference
does. The run's end (``end()`` after ``Finish``: the turn is recorded by then), a ``RunFailed``,
or ``abort()`` when the run was cancelled under us ends the run's story: anything after it is
ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.agents.events import AbortReason, Finish, RunEvent, RunFailed, TextDelta, Usage
from gateway.errors import GatewayError
from gateway.providers.base import ProviderError
from gateway.types import JSONObject
from gateway.ws.protocol import AGENT_TIMEOUT, UNAVAILABLE, WsError

RunStatus = Literal["running", "ok", "error", "timeout", "aborted"]

# OpenAI finish reasons in the reference's vocabulary.
_STOP_REASONS = {"stop": "stop", "length": "length", "tool_calls": "toolUse"}


@dataclass(frozen=True, slots=True)
class OutEvent:
    """One protocol event; ``essential`` ones (a run's end) may use the outbox's reserve."""

    event: Literal["agent", "chat"]
    payload: JSONObject
    essential: bool = False


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """The ``agent`` method's second response: ``error`` is ``None`` when ``ok``."""

    payload: JSONObject
    error: WsError | None = None


def usage_json(usage: Usage) -> JSONObject:
    return {
        "input": usage.prompt_tokens,
        "output": usage.completion_tokens,
        "total": usage.total_tokens,
    }


@dataclass(slots=True)
class RunTranslator:
    """The protocol view of one run. ``abort_reason`` is the ``stopReason`` reported when the
    run is aborted (``rpc`` for ``chat.abort``)."""

    run_id: str
    session_key: str
    agent_id: str
    now_ms: Callable[[], int]
    abort_reason: str = "killed"
    seq: int = 0
    text: str = ""
    usage: Usage | None = None
    status: RunStatus = "running"
    stop_reason: str | None = None
    error: GatewayError | None = None
    started_at: int = 0
    ended_at: int | None = None
    _base: JSONObject = field(default_factory=dict)
    _finish_reason: str | None = None  # the model finished; the run has not ended yet

    def __post_init__(self) -> None:
        self._base = {"runId": self.run_id, "sessionKey": self.session_key}

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def start(self) -> list[OutEvent]:
        """The ``lifecycle`` ``start`` event; call once, before ``feed``."""
        self.started_at = self.now_ms()
        return [self._agent("lifecycle", {"phase": "start", "startedAt": self.started_at})]

    def feed(self, event: RunEvent) -> list[OutEvent]:
        """The protocol events for one run event (none for tool-call fragments: WebSocket runs
        offer the model no tools, and a final reply carries its text only)."""
        if self.finished:
            return []
        if type(event) is TextDelta:
            if not event.text:
                return []
            self.text += event.text
            agent = self._agent("assistant", {"text": self.text, "delta": event.text})
            return [agent, self._chat("delta", deltaText=event.text, message=self._message())]
        if type(event) is Usage:
            self.usage = event
            data = {
                "inputTokens": event.prompt_tokens,
                "outputTokens": event.completion_tokens,
                "totalTokens": event.total_tokens,
            }
            return [self._agent("usage", data)]
        if type(event) is Finish:
            # Said at the run's end (``end``): its turn is recorded by then, and a run that
            # fails to record it still fails.
            self._finish_reason = event.reason
            return []
        if type(event) is RunFailed:
            if event.reason is AbortReason.KILLED:
                return self.abort()
            if event.reason is AbortReason.SHUTDOWN:
                # Stopped by the server's shutdown: an abort, like a disconnect, not a failure.
                return self.abort("shutdown")
            return self._fail(event.error, timed_out=event.reason is AbortReason.TIMEOUT)
        return []

    def end(self) -> list[OutEvent]:
        """The run's events have all come: ``final`` if the model finished (nothing if the run
        already ended with its failure)."""
        if self.finished or self._finish_reason is None:
            return []
        return self._finish(self._finish_reason)

    def abort(self, reason: str | None = None) -> list[OutEvent]:
        """End the run as aborted: ``chat`` ``aborted`` then ``lifecycle`` ``end`` with
        ``aborted: true`` (nothing if the run already ended)."""
        if self.finished:
            return []
        self.status = "aborted"
        self.stop_reason = reason or self.abort_reason
        self.ended_at = self.now_ms()
        end = self._agent(
            "lifecycle",
            {
                "phase": "end",
                "status": "cancelled",
                "aborted": True,
                "stopReason": self.stop_reason,
                "startedAt": self.started_at,
                "endedAt": self.ended_at,
            },
            essential=True,
        )
        extra: dict[str, Any] = {"stopReason": self.stop_reason}
        if self.text:
            extra["message"] = self._message()
        return [self._chat("aborted", essential=True, **extra), end]

    def _finish(self, reason: str) -> list[OutEvent]:
        self.status = "ok"
        self.stop_reason = _STOP_REASONS.get(reason, reason)
        self.ended_at = self.now_ms()
        end = self._agent(
            "lifecycle",
            {
                "phase": "end",
                "aborted": False,
                "stopReason": self.stop_reason,
                "startedAt": self.started_at,
                "endedAt": self.ended_at,
            },
            essential=True,
        )
        extra: dict[str, Any] = {"stopReason": self.stop_reason, "message": self._message()}
        if self.usage is not None:
            extra["usage"] = usage_json(self.usage)
        return [end, self._chat("final", essential=True, **extra)]

    def _fail(self, error: GatewayError, *, timed_out: bool) -> list[OutEvent]:
        self.status = "timeout" if timed_out else "error"
        self.error = error
        self.stop_reason = "error"
        self.ended_at = self.now_ms()
        lifecycle = self._agent(
            "lifecycle",
            {
                "phase": "error",
                "error": error.message,
                "aborted": False,
                "startedAt": self.started_at,
                "endedAt": self.ended_at,
            },
            essential=True,
        )
        return [lifecycle, self._chat("error", essential=True, errorMessage=error.message)]

    def final_answer(self) -> FinalAnswer:
        """The ``agent`` method's final response for the run as it ended."""
        duration = (self.ended_at or self.now_ms()) - self.started_at
        if self.status in ("ok", "aborted"):
            meta: JSONObject = {
                "durationMs": duration,
                "aborted": self.status == "aborted",
                "stopReason": self.stop_reason,
            }
            if self.usage is not None:
                meta["usage"] = usage_json(self.usage)
                meta["agentMeta"] = {"usage": usage_json(self.usage)}
            payloads = [{"text": self.text, "mediaUrl": None}] if self.text else []
            return FinalAnswer(
                {
                    "runId": self.run_id,
                    "status": "ok",
                    "summary": "completed" if self.status == "ok" else "aborted",
                    "result": {"payloads": payloads, "meta": meta},
                }
            )
        error = self.error or GatewayError("The run ended without a reply.")
        timed_out = self.status == "timeout"
        status = "timeout" if timed_out else "error"
        payload = {"runId": self.run_id, "status": status, "summary": error.message}
        return FinalAnswer(payload, run_error(error, timed_out=timed_out))

    def _agent(self, stream: str, data: JSONObject, *, essential: bool = False) -> OutEvent:
        self.seq += 1
        payload = {
            **self._base,
            "agentId": self.agent_id,
            "stream": stream,
            "data": data,
            "seq": self.seq,
            "ts": self.now_ms(),
        }
        return OutEvent("agent", payload, essential)

    def _chat(self, state: str, *, essential: bool = False, **fields: Any) -> OutEvent:
        payload = {**self._base, "agentId": self.agent_id, "seq": self.seq, "state": state}
        payload.update(fields)
        return OutEvent("chat", payload, essential)

    def _message(self) -> JSONObject:
        return {
            "role": "assistant",
            "content": [{"type": "text", "text": self.text}],
            "timestamp": self.now_ms(),
        }


def run_error(error: GatewayError, *, timed_out: bool = False) -> WsError:
    """A failed run as a protocol error: ``AGENT_TIMEOUT`` for the run's own deadline
    (``timed_out``), else ``UNAVAILABLE`` (retryable when another attempt may succeed)."""
    if timed_out:
        return WsError(AGENT_TIMEOUT, error.message)
    retryable = isinstance(error, ProviderError) and error.kind != "bad_request"
    retry_ms = round(error.retry_after * 1000) if error.retry_after is not None else None
    return WsError(UNAVAILABLE, error.message, retryable=retryable, retry_after_ms=retry_ms)
