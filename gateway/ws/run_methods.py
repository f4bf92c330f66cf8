"""The methods that start and stop runs: ``agent``, ``chat.send``, ``chat.abort``.

Session keys follow the reference: ``agent`` uses ``sessionKey`` as given, else ``sessionId``
gives ``agent:<agentId>:explicit:<sessionId>``, else the agent's main session
``agent:<agentId>:main``; ``chat.send`` names its session. The run id is the client's
``idempotencyKey``: a key seen again while its run is in flight answers ``in_flight``, and after
it the cached final answer (``Hub`` keeps a bounded number).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import trio

from gateway.agents.events import AbortReason
from gateway.agents.models import chat_model
from gateway.agents.routing import RESERVED_SESSION_PREFIXES
from gateway.agents.runtime import AgentRuntime
from gateway.errors import InvalidRequest
from gateway.settings import AgentSettings, AgentsSettings, ModelChoice, Settings
from gateway.types import JSONObject
from gateway.ws.hub import FinishedRun, Hub
from gateway.ws.methods import ANSWERED, Caller, Params
from gateway.ws.protocol import INVALID_REQUEST, Request, WsError, invalid_params
from gateway.ws.runs import Runs, RunSpec, now_ms

MAX_MESSAGE_CHARS = 1_000_000
MAX_KEY_CHARS = 512
# How long chat.abort waits for the aborted runs to publish their end before answering.
ABORT_SETTLE_SECONDS = 1.0


class RunMethods:
    def __init__(self, settings: Settings, runtime: AgentRuntime, hub: Hub, runs: Runs) -> None:
        self.settings = settings
        self.runtime = runtime
        self.hub = hub
        self.runs = runs

    @property
    def agents(self) -> AgentsSettings:
        return self.runtime.agents

    async def agent(self, caller: Caller, request: Request, p: Params) -> Any:
        """Answer ``accepted`` at once and the final result when the run ends (two responses
        to the one request). The run belongs to the caller's connection (see ``Runs``)."""
        message = p.text("message", max_length=MAX_MESSAGE_CHARS)
        run_id = p.required_string("idempotencyKey", max_length=MAX_KEY_CHARS)
        agent = self._agent(p.string("agentId", max_length=64), p)
        session_key = p.string("sessionKey", max_length=MAX_KEY_CHARS)
        session_id = p.string("sessionId", max_length=MAX_KEY_CHARS)
        if session_key is not None:
            check_session_key(p, "sessionKey", session_key)
            if p.string("agentId") is None:
                agent = self._agent(agent_in_key(session_key), p, field="sessionKey")
        elif session_id is not None:
            session_key = f"agent:{agent.id}:explicit:{session_id}"
        else:
            session_key = f"agent:{agent.id}:main"
        model_ref = p.string("model", max_length=256)
        model = self._model(model_ref, p) if model_ref is not None else None
        timeout = p.number("timeout", minimum=0, maximum=7 * 24 * 3600)
        spec = RunSpec(
            run_id=run_id,
            agent=agent,
            session_key=session_key,
            message=message,
            system=p.string("extraSystemPrompt", max_length=MAX_MESSAGE_CHARS),
            model=model,
            timeout_seconds=timeout or None,
        )
        existing = self.hub.lookup(run_id)
        if existing is not None:
            if isinstance(existing, FinishedRun):
                answer = existing.answer
                if answer.error is not None:
                    raise answer.error
                return answer.payload
            return {
                "runId": run_id,
                "sessionKey": existing.session_key,
                "agentId": existing.translator.agent_id,
                "status": "in_flight",
            }
        accepted = {
            "runId": run_id,
            "sessionKey": session_key,
            "agentId": agent.id,
            "status": "accepted",
            "acceptedAt": now_ms(),
        }
        await self.runs.start(
            spec,
            caller,
            caller.nursery,
            partial(caller.respond, request.id, accepted),
            answer_id=request.id,
        )
        return ANSWERED

    async def chat_send(self, caller: Caller, request: Request, p: Params) -> Any:
        """Answer ``started``; the run then speaks through events only, to the caller and
        every follower of the session (the caller follows it from now on)."""
        key = p.required_string("sessionKey", max_length=MAX_KEY_CHARS)
        check_session_key(p, "sessionKey", key)
        message = p.text("message", max_length=MAX_MESSAGE_CHARS)
        run_id = p.required_string("idempotencyKey", max_length=MAX_KEY_CHARS)
        timeout_ms = p.number("timeoutMs", minimum=0, maximum=7 * 24 * 3600 * 1000)
        agent = self._agent(agent_in_key(key), p, field="sessionKey")
        self.hub.follow(caller, key)
        existing = self.hub.lookup(run_id)
        if isinstance(existing, FinishedRun):
            return {"runId": run_id, "status": existing.status}
        if existing is not None:
            return {"runId": run_id, "status": "in_flight"}
        started = {"runId": run_id, "status": "started"}
        spec = RunSpec(
            run_id=run_id,
            agent=agent,
            session_key=key,
            message=message,
            timeout_seconds=timeout_ms / 1000 if timeout_ms else None,
        )
        accept = partial(caller.respond, request.id, started)
        await self.runs.start(spec, caller, caller.nursery, accept)
        return ANSWERED

    async def chat_abort(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        """Abort the session's matching runs; answers once they have published their end."""
        key = p.required_string("sessionKey", max_length=MAX_KEY_CHARS)
        run_id = p.string("runId", max_length=MAX_KEY_CHARS)
        tickets = [
            t for t in self.hub.in_flight(session_key=key) if run_id is None or t.run_id == run_id
        ]
        killed = self.runs.abort(tickets, AbortReason.KILLED, session_key=key, run_id=run_id)
        elsewhere = False
        if run_id is None:
            # The run holding this key's lane may be in another process: ask admission.
            elsewhere = await self.runtime.admission.request_kill(key)
        with trio.move_on_after(ABORT_SETTLE_SECONDS):
            for ticket in tickets:
                await ticket.done.wait()
        return {"ok": True, "aborted": bool(killed) or elsewhere, "runIds": sorted(killed)}

    def _agent(self, agent_id: str | None, p: Params, field: str = "agentId") -> AgentSettings:
        if agent_id is None:
            agent = self.agents.get(self.agents.default_id)
        else:
            agent = self.agents.get(agent_id.lower())
        if agent is None:
            raise invalid_params(p.method, f'{field} names an unknown agent "{agent_id}"', field)
        return agent

    def _model(self, ref: str, p: Params) -> ModelChoice:
        """``provider/model`` or a bare id one provider declares (``gateway.agents.models``)."""
        try:
            choice = chat_model(ref, self.runtime.providers.catalog)
        except InvalidRequest:
            raise invalid_params(p.method, f"unknown model: {ref}", "model") from None
        assert choice is not None
        return choice


def agent_in_key(session_key: str) -> str | None:
    """The agent id of an ``agent:<id>:...`` key (``None`` for other keys)."""
    parts = session_key.split(":")
    if len(parts) >= 3 and parts[0].lower() == "agent" and parts[1]:
        return parts[1].lower()
    return None


def check_session_key(p: Params, field: str, key: str) -> None:
    if key.lower().startswith(RESERVED_SESSION_PREFIXES):
        raise WsError(
            INVALID_REQUEST,
            f"invalid {p.method} params: {field} '{key}' is reserved "
            "(subagent:, cron: and acp: keys are internal)",
            details={"field": field},
        )
