"""What the ``health`` and ``status`` methods report, in the shapes the OpenClaw CLI reads. Pure.

``health`` (and ``hello-ok``'s ``snapshot.health``) is the protocol's health summary::

    {ok: true, ts, durationMs, defaultAgentId,
     agents: [{agentId, name?, isDefault, heartbeat: HEARTBEAT, sessions: SESSIONS}],
     sessions: SESSIONS,                              every agent's sessions together
     heartbeatSeconds: 0, channels: {}, channelOrder: [], channelLabels: {},
     plugins: {loaded: [], errors: []}}

    HEARTBEAT = {enabled: false, every: "disabled", everyMs: null, prompt: "", target: "none",
                 ackMaxChars: 0}
    SESSIONS  = {path, count, recent: [{key, updatedAt, age}]}   recent: newest first

``openclaw health`` reads every agent's ``heartbeat.everyMs`` and ``sessions`` (``path``,
``count``, each recent ``key`` and ``age``) and fails without them. The gateway has no heartbeat
runner, channels or plugins, so those are reported off and empty; the optional parts that
describe subsystems it does not have (``eventLoop``, ``configReload``, ``contextEngines``,
``deliveryQueues``, ``modelRuntime``) are left out, and the CLI prints nothing for them. Without
``SessionFacts`` (the store did not answer) ``ok``, ``agents`` and ``sessions`` are left out,
which the protocol allows for a snapshot.

``status`` carries, besides the gateway's own fields, the parts of the protocol's status
summary that ``openclaw status --json`` reads::

    {heartbeat: {defaultAgentId, agents: [{agentId, enabled: false, every: "disabled",
                                           everyMs: null}]},
     channelSummary: [], queuedSystemEvents: [],
     sessions: {paths: [path], count, defaults: {model, contextTokens},
                recent: [], byAgent: [{agentId, path, count, recent: [{key, updatedAt, age}]}]}}

(``sessions.recent`` holds rows with per-session model details in the reference; the gateway
keeps none, so the list is empty rather than made up.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.sessions.base import SessionInfo
from gateway.settings import AgentsSettings, ProviderSettings
from gateway.types import JSONObject

# How many recently updated sessions a report lists per agent (and overall).
RECENT_SESSIONS = 5


@dataclass(frozen=True, slots=True)
class SessionStats:
    """Some sessions (one agent's, or all): how many, and the most recently updated first."""

    count: int
    recent: Sequence[SessionInfo]


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the session store says: where it keeps transcripts, and the sessions in all and
    per agent id (an agent missing from ``by_agent`` has none)."""

    location: str
    overall: SessionStats
    by_agent: Mapping[str, SessionStats]

    def of(self, agent_id: str) -> SessionStats:
        return self.by_agent.get(agent_id, SessionStats(0, ()))


def heartbeat_off() -> JSONObject:
    """An agent's heartbeat, as the gateway has none."""
    return {
        "enabled": False,
        "every": "disabled",
        "everyMs": None,
        "prompt": "",
        "target": "none",
        "ackMaxChars": 0,
    }


def sessions_summary(location: str, stats: SessionStats, now_ms: int) -> JSONObject:
    """``{path, count, recent}``; ``age`` is milliseconds since the session was updated."""
    return {
        "path": location,
        "count": stats.count,
        "recent": [
            {"key": s.key, "updatedAt": s.updated_at_ms, "age": max(0, now_ms - s.updated_at_ms)}
            for s in stats.recent
        ],
    }


def health_payload(
    agents: AgentsSettings, sessions: SessionFacts | None, *, now_ms: int, duration_ms: int
) -> JSONObject:
    """The ``health`` payload (see the module docstring)."""
    body: JSONObject = {}
    if sessions is not None:
        body["ok"] = True
    body |= {"ts": now_ms, "durationMs": duration_ms, "defaultAgentId": agents.default_id}
    if sessions is not None:
        body["agents"] = [
            {
                "agentId": agent.id,
                **({"name": agent.name} if agent.name else {}),
                "isDefault": agent.id == agents.default_id,
                "heartbeat": heartbeat_off(),
                "sessions": sessions_summary(sessions.location, sessions.of(agent.id), now_ms),
            }
            for agent in agents.agents
        ]
        body["sessions"] = sessions_summary(sessions.location, sessions.overall, now_ms)
    body |= {
        "heartbeatSeconds": 0,
        "channels": {},
        "channelOrder": [],
        "channelLabels": {},
        "plugins": {"loaded": [], "errors": []},
    }
    return body


def status_summary(
    agents: AgentsSettings,
    providers: Mapping[str, ProviderSettings],
    sessions: SessionFacts,
    *,
    now_ms: int,
) -> dict[str, Any]:
    """The status-summary part of the ``status`` payload (see the module docstring)."""
    default = agents.get(agents.default_id)
    model = agents.model_for(default).primary if default is not None else None
    return {
        "heartbeat": {
            "defaultAgentId": agents.default_id,
            "agents": [
                {"agentId": a.id, "enabled": False, "every": "disabled", "everyMs": None}
                for a in agents.agents
            ],
        },
        "channelSummary": [],
        "queuedSystemEvents": [],
        "sessions": {
            "paths": [sessions.location],
            "count": sessions.overall.count,
            "defaults": {"model": model, "contextTokens": context_window(providers, model)},
            "recent": [],
            "byAgent": [
                {"agentId": a.id, **sessions_summary(sessions.location, sessions.of(a.id), now_ms)}
                for a in agents.agents
            ],
        },
    }


def context_window(providers: Mapping[str, ProviderSettings], model: str | None) -> int | None:
    """The configured context window of a ``provider/model`` reference, if any."""
    provider_id, _, model_id = (model or "").partition("/")
    provider = providers.get(provider_id)
    for entry in provider.models if provider is not None else ():
        if entry.id == model_id:
            return entry.context_window
    return None
