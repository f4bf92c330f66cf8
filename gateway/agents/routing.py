"""Which agent and which session a request belongs to. Pure.

Agent: header ``x-openclaw-agent-id`` (legacy ``x-openclaw-agent``) wins; else ``model``
(``openclaw``, ``openclaw/default`` or missing: the default agent; ``openclaw:<id>``,
``openclaw/<id>``, ``agent:<id>``, case-insensitive). Session key: header
``x-openclaw-session-key``; else ``user`` → ``agent:<id>:openai-user:<user>``; else a fresh
stateless ``agent:<id>:openai:<uuid>``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from gateway.errors import InvalidRequest
from gateway.settings import AgentSettings, AgentsSettings

RESERVED_SESSION_PREFIXES = ("subagent:", "cron:", "acp:")
_MODEL_PREFIXES = ("openclaw:", "openclaw/", "agent:")
INVALID_MODEL = "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`."


@dataclass(frozen=True, slots=True)
class SessionTarget:
    key: str
    stateful: bool


def agent_id_from_model(model: str) -> str | None:
    """The agent a ``model`` string names (``None``: the default). Raises ``InvalidRequest``."""
    lowered = model.strip().lower()
    if lowered in ("", "openclaw", "openclaw/default"):
        return None
    for prefix in _MODEL_PREFIXES:
        if lowered.startswith(prefix):
            agent_id = lowered[len(prefix) :].strip()
            if agent_id:
                return agent_id
    raise InvalidRequest(INVALID_MODEL, param="model")


def resolve_agent(agents: AgentsSettings, header_agent: str | None, model: str) -> AgentSettings:
    """The agent of a request. Raises ``InvalidRequest`` for a bad model or an unknown agent."""
    header = (header_agent or "").strip().lower()
    agent_id = header or agent_id_from_model(model) or agents.default_id
    agent = agents.get(agent_id)
    if agent is None:
        raise InvalidRequest(f"Unknown agent '{agent_id}'.", param="model")
    return agent


def resolve_session(
    agent_id: str, header_key: str | None, user: str | None, surface: str = "openai"
) -> SessionTarget:
    """The session key of a request. Raises ``InvalidRequest`` for a reserved key. ``surface``
    names the API in derived keys (``openai`` for chat completions, ``openresponses`` for the
    Responses API)."""
    key = (header_key or "").strip()
    if key:
        if key.lower().startswith(RESERVED_SESSION_PREFIXES):
            raise InvalidRequest(
                f"Session key '{key}' is reserved (subagent:, cron: and acp: keys are internal).",
                param="x-openclaw-session-key",
            )
        return SessionTarget(key, stateful=True)
    if user:
        if "\x00" in user:
            raise InvalidRequest("`user` must not contain NUL characters.", param="user")
        return SessionTarget(f"agent:{agent_id}:{surface}-user:{user}".lower(), stateful=True)
    return SessionTarget(f"agent:{agent_id}:{surface}:{uuid.uuid4()}", stateful=False)
