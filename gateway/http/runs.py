"""What the completion routes (chat completions, Responses) share around their run: where it
goes (agent, model, session and channel, from the request and its headers), opening it so that
the access log reports it, and draining it for a JSON answer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import trio

from gateway.agents.events import RunEvent
from gateway.agents.models import chat_model
from gateway.agents.routing import SessionTarget, resolve_agent, resolve_session
from gateway.agents.run import Run, RunRequest
from gateway.agents.runtime import AgentRuntime
from gateway.asgi import request_log
from gateway.http.body import agent_header, header_value, message_channel
from gateway.http.exchange import Exchange
from gateway.settings import AgentSettings, ModelChoice


@dataclass(frozen=True, slots=True)
class RunTarget:
    """Where a completion request runs."""

    agent: AgentSettings
    model: ModelChoice | None  # ``x-openclaw-model``; ``None``: the agent's
    session: SessionTarget
    channel: str | None  # ``x-openclaw-message-channel``

    def headers(self) -> dict[str, str]:
        """The response headers that say where it ran."""
        return {"x-openclaw-session-key": header_value(self.session.key)}


def resolve_target(
    runtime: AgentRuntime, exchange: Exchange, model: str, user: str | None, surface: str
) -> RunTarget:
    """The agent (header, else ``model``), the model override, the session (header, else
    derived from ``user`` and ``surface``) and the channel, checked in that order.
    Raises ``InvalidRequest``."""
    agent = resolve_agent(runtime.agents, agent_header(exchange), model)
    return RunTarget(
        agent,
        chat_model(exchange.header(b"x-openclaw-model"), runtime.providers.catalog),
        resolve_session(agent.id, exchange.header(b"x-openclaw-session-key"), user, surface),
        message_channel(exchange.header(b"x-openclaw-message-channel")),
    )


def open_run(
    runtime: AgentRuntime, request: RunRequest, exchange: Exchange, nursery: trio.Nursery
) -> Run:
    """Open a completion route's run in the request's nursery; the access log reports it."""
    run = runtime.open_run(request, nursery)
    log = request_log(exchange.scope)
    if log is not None:
        log.run = run
    return run


async def drain(
    receive: trio.MemoryReceiveChannel[RunEvent], take: Callable[[RunEvent], object]
) -> None:
    """``take`` every event of a run until its channel ends (a JSON answer is made only once
    the run has ended: its turn is recorded before the answer says it is complete). What is
    already waiting is taken without a schedule point per event."""
    with receive:
        while True:
            try:
                take(receive.receive_nowait())
            except trio.WouldBlock:
                try:
                    take(await receive.receive())
                except trio.EndOfChannel:
                    break
            except trio.EndOfChannel:
                break
