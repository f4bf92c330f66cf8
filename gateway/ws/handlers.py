"""The methods behind the dispatch table: each validates its params and returns the payload of
its response, or answers by itself and returns ``ANSWERED`` (``agent`` answers twice).

This module has the read and session methods; ``run_methods`` those that run agents. Handlers
raise ``WsError`` for anything the client should see; the connection turns any other exception
into an ``UNAVAILABLE`` response and logs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from gateway.agents.events import AbortReason
from gateway.agents.runtime import AgentRuntime
from gateway.sessions.base import TranscriptEntry
from gateway.settings import AgentsSettings, Settings
from gateway.types import JSONObject
from gateway.ws.health import (
    RECENT_SESSIONS,
    SessionFacts,
    SessionStats,
    health_payload,
    status_summary,
)
from gateway.ws.hub import Hub
from gateway.ws.methods import Caller, Params
from gateway.ws.protocol import UNAVAILABLE, Request, WsError
from gateway.ws.run_methods import MAX_KEY_CHARS, RunMethods
from gateway.ws.runs import Runs, now_ms

logger = logging.getLogger("gateway.ws")

DEFAULT_SESSIONS_LIMIT = 100
DEFAULT_HISTORY_LIMIT = 200
MAX_LIMIT = 1000
# How long sessions.reset / sessions.delete wait for the session's lane.
LANE_WAIT_SECONDS = 5.0

Handler = Callable[[Caller, Request, Params], Awaitable[Any]]


class Handlers:
    def __init__(
        self, settings: Settings, runtime: AgentRuntime, hub: Hub, runs: Runs, version: str
    ) -> None:
        self.settings = settings
        self.runtime = runtime
        self.store = runtime.transcripts
        self.hub = hub
        self.runs = runs
        self.version = version
        self.started_at = time.monotonic()
        self.run_methods = RunMethods(settings, runtime, hub, runs)
        self.table: dict[str, Handler] = {
            "health": self.health,
            "status": self.status,
            "agents.list": self.agents_list,
            "models.list": self.models_list,
            "sessions.list": self.sessions_list,
            "chat.history": self.chat_history,
            "sessions.reset": self.sessions_reset,
            "sessions.delete": self.sessions_delete,
            "agent": self.run_methods.agent,
            "chat.send": self.run_methods.chat_send,
            "chat.abort": self.run_methods.chat_abort,
        }

    @property
    def agents(self) -> AgentsSettings:
        """The agents as the runtime has them now (a reload replaces them)."""
        return self.runtime.agents

    def configure(self, settings: Settings) -> None:
        """Answer from ``settings`` from now on (a configuration reload)."""
        self.settings = settings
        self.run_methods.settings = settings

    async def call(self, caller: Caller, request: Request) -> Any:
        """Run the method (already authorized) and return its payload or ``ANSWERED``."""
        handler = self.table[request.method]
        return await handler(caller, request, Params(request.method, request.params))

    # Read methods

    async def session_facts(self) -> SessionFacts:
        """What the store says about sessions, in all and per agent (raises what it raises)."""
        store = self.store

        async def stats(agent_id: str | None) -> SessionStats:
            recent = await store.list_sessions(agent_id, RECENT_SESSIONS)
            return SessionStats(await store.count_sessions(agent_id), recent)

        by_agent = {agent.id: await stats(agent.id) for agent in self.agents.agents}
        return SessionFacts(store.location, await stats(None), by_agent)

    async def health_snapshot(self) -> JSONObject:
        """``health`` for ``hello-ok``'s snapshot. A store that fails leaves out its part (and
        is logged) rather than refusing the connection."""
        try:
            return await self.health_report()
        except Exception:
            logger.warning("health snapshot without sessions: the store failed", exc_info=True)
            return health_payload(self.agents, None, now_ms=now_ms(), duration_ms=0)

    async def health_report(self) -> JSONObject:
        started = time.monotonic()
        facts = await self.session_facts()
        duration_ms = round((time.monotonic() - started) * 1000)
        return health_payload(self.agents, facts, now_ms=now_ms(), duration_ms=duration_ms)

    def uptime_ms(self) -> int:
        return round((time.monotonic() - self.started_at) * 1000)

    async def health(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        return await self.health_report()

    async def status(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        stats = self.runtime.statistics()
        facts = await self.session_facts()
        return {
            "ts": now_ms(),
            "version": self.version,
            "uptimeMs": self.uptime_ms(),
            "defaultAgentId": self.agents.default_id,
            "agents": [{"id": a.id, "name": a.name or a.id} for a in self.agents.agents],
            "runs": {
                "active": stats.active_runs,
                "queued": stats.queued_runs,
                "runIds": [run.id for run in self.runtime.active_runs()],
            },
            "connections": len(self.hub.peers),
            **status_summary(self.agents, self.settings.providers, facts, now_ms=now_ms()),
        }

    async def agents_list(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        agents = []
        for agent in self.agents.agents:
            choice = self.agents.model_for(agent)
            entry: JSONObject = {"id": agent.id, "model": {"primary": choice.primary}}
            if agent.name:
                entry["name"] = agent.name
            if choice.fallbacks:
                entry["model"]["fallbacks"] = list(choice.fallbacks)
            agents.append(entry)
        return {
            "defaultId": self.agents.default_id,
            "mainKey": "main",
            "scope": "per-sender",
            "agents": agents,
        }

    async def models_list(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        models: list[JSONObject] = []
        builtin: list[JSONObject] = []
        for provider in self.settings.providers.values():
            for model in provider.models:
                entry: JSONObject = {
                    "id": model.id,
                    "name": model.name or model.id,
                    "provider": provider.id,
                }
                if model.context_window is not None:
                    entry["contextWindow"] = model.context_window
                (builtin if provider.api == "echo" else models).append(entry)
        # Configured models first: the built-in echo is the fallback of last resort.
        return {"models": models + builtin}

    async def sessions_list(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        limit = p.integer("limit", minimum=1, maximum=MAX_LIMIT) or DEFAULT_SESSIONS_LIMIT
        agent_id = p.string("agentId", max_length=64)
        sessions = await self.store.list_sessions(agent_id.lower() if agent_id else None, limit)
        active: dict[str, list[str]] = {}
        for run in self.runtime.active_runs():
            active.setdefault(run.session_key, []).append(run.id)
        return {
            "ts": now_ms(),
            "count": len(sessions),
            "sessions": [
                {
                    "key": s.key,
                    "agentId": s.agent_id,
                    "kind": "direct",
                    "isMain": s.key == f"agent:{s.agent_id}:main",
                    "createdAt": s.created_at_ms,
                    "updatedAt": s.updated_at_ms,
                    "messageCount": s.message_count,
                    "hasActiveRun": s.key in active,
                    "activeRunIds": active.get(s.key, []),
                }
                for s in sessions
            ],
        }

    async def chat_history(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        """The newest ``limit`` messages, oldest first; the caller follows the session."""
        key = p.required_string("sessionKey", max_length=MAX_KEY_CHARS)
        limit = p.integer("limit", minimum=1, maximum=MAX_LIMIT) or DEFAULT_HISTORY_LIMIT
        self.hub.follow(caller, key)
        recent = await self.store.recent(key, limit)
        newest = list(recent.entries) if recent is not None else []
        total = recent.total if recent is not None else 0
        return {
            "sessionKey": key,
            "messages": [history_message(entry) for entry in newest],
            "totalMessages": total,
            "hasMore": total > len(newest),
        }

    # Session admin

    async def sessions_reset(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        key = p.required_string("key", max_length=MAX_KEY_CHARS)
        return {"ok": True, "key": key, "reset": await self._with_lane(key, self.store.reset)}

    async def sessions_delete(self, caller: Caller, request: Request, p: Params) -> JSONObject:
        key = p.required_string("key", max_length=MAX_KEY_CHARS)
        return {"ok": True, "key": key, "deleted": await self._with_lane(key, self.store.delete)}

    async def _with_lane(self, key: str, action: Callable[[str], Awaitable[bool]]) -> bool:
        """Abort the session's runs, then act inside its lane so no run appends around it."""
        tickets = self.hub.in_flight(session_key=key)
        self.runs.abort(tickets, AbortReason.KILLED, session_key=key, run_id=None)
        await self.runtime.admission.request_kill(key)
        with trio.move_on_after(LANE_WAIT_SECONDS):
            async with self.runtime.admission.admit(key, _nothing_to_abort):
                return await action(key)
        raise WsError(
            UNAVAILABLE, f"session {key} is busy; try again", retryable=True, retry_after_ms=1000
        )


def _nothing_to_abort() -> None:
    """A session admin action holding a lane is brief; a kill meanwhile waits for it."""


def history_message(entry: TranscriptEntry) -> JSONObject:
    """A stored message as ``chat.history`` shows it: assistant text as content parts, an
    aborted reply marked (``aborted`` and the reference's ``openclawAbort``), the message
    channel its run was given (``channel``) when there was one."""
    message = entry.message
    out: JSONObject = {"role": message["role"]}
    content = message.get("content")
    if message["role"] == "assistant" and isinstance(content, str):
        out["content"] = [{"type": "text", "text": content}]
    else:
        out["content"] = content if content is not None else []
    for name in ("tool_calls", "tool_call_id", "name"):
        if name in message:
            out[name] = message[name]
    out["timestamp"] = entry.created_at_ms
    if entry.usage is not None:
        out["usage"] = {
            "input": entry.usage["prompt_tokens"],
            "output": entry.usage["completion_tokens"],
            "total": entry.usage["total_tokens"],
        }
    if entry.status == "aborted":
        out["aborted"] = True
        out["stopReason"] = "aborted"
        out["openclawAbort"] = {"aborted": True, "runId": entry.run_id}
    elif entry.status == "error":
        out["stopReason"] = "error"
    if entry.channel is not None:
        out["channel"] = entry.channel
    out["__openclaw"] = {"runId": entry.run_id, "seq": entry.seq, "status": entry.status}
    return out
