"""The agent run: the one code path behind HTTP and WebSocket completions.

``AgentRuntime.run`` waits for the session lane and a run slot, assembles the prompt, asks the
agent's model (then its fallbacks) for a completion and pushes every event into the caller's
bounded channel. Its caller owns it: the run lives in the caller's nursery and is cancelled with
it (client disconnect, ``chat.abort``, shutdown) or by ``kill_session``. Whatever ends it, a
stateful run appends its turn to the transcript (shielded), marked ``complete``, ``aborted`` or
``error``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from gateway.agents.events import Finish, ProviderEvent, RunEvent, RunFailed
from gateway.agents.prompt import Prompt, assemble, system_prompt
from gateway.agents.reply import Reply
from gateway.agents.routing import SessionTarget
from gateway.errors import GatewayError
from gateway.providers.base import ModelRequest, ProviderError
from gateway.providers.registry import ProviderRegistry
from gateway.sessions.base import SessionStore, TurnStatus
from gateway.settings import AgentSettings, AgentsSettings, ModelChoice
from gateway.sse import usage_dict
from gateway.types import ChatMessage

logger = logging.getLogger("gateway.run")

# How long a shielded transcript write may delay a cancelled run's exit.
_PERSIST_TIMEOUT = 10.0


class RunAborted(GatewayError):
    """The run was aborted on request (``/sessions/<key>/kill``, ``chat.abort``)."""

    status = 409
    type = "aborted"


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run: ``messages`` are the client's (system text already split off into ``system``)."""

    run_id: str
    agent: AgentSettings
    session: SessionTarget
    messages: Sequence[ChatMessage]
    system: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    model: ModelChoice | None = None
    timeout_seconds: float | None = None


@dataclass(slots=True)
class ActiveRun:
    run_id: str
    session_key: str
    agent_id: str
    scope: trio.CancelScope
    started_at: float
    phase: str = "queued"
    killed: bool = False
    lane_killed: Callable[[], bool] = lambda: False

    @property
    def aborted(self) -> bool:
        """Killed on request, here or (through the store) from another process."""
        return self.killed or self.lane_killed()


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    active_runs: int
    queued_runs: int


class AgentRuntime:
    """Runs agents for one app. Holds no per-request state beyond the table of active runs."""

    def __init__(
        self, agents: AgentsSettings, providers: ProviderRegistry, store: SessionStore
    ) -> None:
        self.agents = agents
        self.providers = providers
        self.store = store
        self._active: dict[str, ActiveRun] = {}

    def statistics(self) -> RuntimeStatistics:
        queued = sum(1 for run in self._active.values() if run.phase == "queued")
        return RuntimeStatistics(active_runs=len(self._active), queued_runs=queued)

    def active_runs(self, session_key: str | None = None) -> list[ActiveRun]:
        return [
            run
            for run in self._active.values()
            if session_key is None or run.session_key == session_key
        ]

    def kill(self, *, session_key: str | None = None, run_id: str | None = None) -> list[str]:
        """Abort the matching runs of this process; returns their run ids."""
        killed = []
        for run in list(self._active.values()):
            if (session_key is None or run.session_key == session_key) and (
                run_id is None or run.run_id == run_id
            ):
                run.killed = True
                run.scope.cancel()
                killed.append(run.run_id)
        return killed

    async def run(self, request: RunRequest, send: trio.MemorySendChannel[RunEvent]) -> None:
        """Run ``request`` to the end, pushing events into ``send`` and closing it.

        Provider failures become a final ``RunFailed`` event; this raises only ``Cancelled``
        (after recording the partial turn) or on a bug. A consumer that closes its receive side
        aborts the run.
        """
        failure: RunFailed | None = None
        async with send:
            with trio.CancelScope() as scope:
                active = ActiveRun(
                    request.run_id,
                    request.session.key,
                    request.agent.id,
                    scope,
                    time.monotonic(),
                )
                self._active[request.run_id] = active
                try:
                    lane_key = request.session.key if request.session.stateful else None
                    async with self.store.lane(lane_key) as lane:
                        active.phase = "running"
                        active.lane_killed = lambda: lane.killed
                        await self._run_in_lane(request, send, active)
                    if lane.killed:
                        active.killed = True
                except trio.BrokenResourceError:
                    logger.debug("run %s: consumer went away", request.run_id)
                except Exception:
                    # A bug must not take the request (or the connection) down with it: the
                    # client gets an OpenAI-shaped 500 and the details stay in the log.
                    logger.exception("run %s failed unexpectedly", request.run_id)
                    failure = RunFailed(GatewayError("Internal server error"))
                finally:
                    del self._active[request.run_id]
            if active.killed:
                failure = RunFailed(RunAborted("The run was aborted."))
            if failure is not None:
                with contextlib.suppress(trio.BrokenResourceError):
                    await send.send(failure)

    async def _run_in_lane(
        self, request: RunRequest, send: trio.MemorySendChannel[RunEvent], active: ActiveRun
    ) -> None:
        history = None
        if request.session.stateful:
            history = await self.store.context(
                request.session.key, self.agents.defaults.history_limit
            )
        prompt = assemble(request.messages, history)
        reply = Reply()
        finished = False
        limit = request.timeout_seconds or self.agents.defaults.timeout_seconds
        try:
            with trio.move_on_after(limit) as timeout:
                await self._complete(request, prompt, reply, send)
            if timeout.cancelled_caught and reply.error is None:
                error = GatewayError(
                    f"The agent run timed out after {limit:g} s.",
                    status=504,
                    type_="timeout_error",
                )
                reply.add(RunFailed(error))
                await send.send(RunFailed(error))
            finished = True
        finally:
            if request.session.stateful:
                status: TurnStatus = "error" if reply.error else "complete"
                if not finished or active.aborted:
                    status = "aborted"
                await self._persist(request, prompt, reply, status)

    async def _complete(
        self,
        request: RunRequest,
        prompt: Prompt,
        reply: Reply,
        send: trio.MemorySendChannel[RunEvent],
    ) -> None:
        choice = request.model or self.agents.model_for(request.agent)
        system = system_prompt(self.agents.system_prompt_for(request.agent), request.system)

        async def emit(event: ProviderEvent) -> None:
            reply.add(event)
            await send.send(event)

        chain = choice.chain
        for attempt, ref in enumerate(chain):
            provider, model = self.providers.resolve(ref)
            model_request = ModelRequest(model, prompt.messages, system, request.params)
            try:
                await provider.stream(model_request, emit)
            except ProviderError as error:
                if reply.events == 0 and error.retryable and attempt + 1 < len(chain):
                    logger.warning(
                        "run %s: %s failed before its first token (%s: %s); falling back to %s",
                        request.run_id, ref, error.kind, error.message, chain[attempt + 1],
                    )  # fmt: skip
                    continue
                failed = RunFailed(error)
                reply.add(failed)
                await send.send(failed)
                return
            except Exception:
                logger.exception("run %s: provider %s crashed", request.run_id, ref)
                failed = RunFailed(GatewayError("The model provider failed unexpectedly."))
                reply.add(failed)
                await send.send(failed)
                return
            if reply.finish_reason is None:
                await emit(Finish("tool_calls" if reply.calls else "stop"))
            return

    async def _persist(
        self, request: RunRequest, prompt: Prompt, reply: Reply, status: TurnStatus
    ) -> None:
        messages = list(prompt.turn)
        if reply.has_output:
            messages.append(reply.message())
        usage = usage_dict(reply.usage) if reply.usage else None
        with trio.CancelScope(shield=True), trio.move_on_after(_PERSIST_TIMEOUT) as scope:
            try:
                await self.store.append_turn(
                    request.session.key, request.agent.id, request.run_id, messages, status, usage
                )
            except Exception:
                logger.exception("run %s: could not record the turn", request.run_id)
        if scope.cancelled_caught:
            logger.error("run %s: recording the turn timed out", request.run_id)
