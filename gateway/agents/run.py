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
import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from gateway.agents.events import (
    Finish,
    ProviderEvent,
    RunEvent,
    RunFailed,
    TextDelta,
    ToolCallDelta,
)
from gateway.agents.prompt import Prompt, assemble, new_turn, system_prompt
from gateway.agents.record import NullObserver, RunObserver, RunRecord
from gateway.agents.reply import Reply
from gateway.agents.routing import SessionTarget
from gateway.errors import GatewayError
from gateway.providers.base import ModelRequest, ProviderError
from gateway.providers.registry import ProviderRegistry
from gateway.sessions.base import LaneHandle, SessionStore, TurnStatus
from gateway.settings import AgentSettings, AgentsSettings, ModelChoice
from gateway.sse import usage_dict
from gateway.text import clean, encodable
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
    # A consumer that takes no event for this long is stalled (a client that stopped reading):
    # the run is aborted so its upstream does not stay open. ``None``: wait forever.
    send_timeout: float | None = None


class ConsumerStalled(Exception):
    """The run's consumer took no event for ``send_timeout`` seconds."""


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    active_runs: int
    queued_runs: int


class AgentRuntime:
    """Runs agents for one app. Holds no per-request state beyond the table of active runs."""

    def __init__(
        self,
        agents: AgentsSettings,
        providers: ProviderRegistry,
        store: SessionStore,
        observer: RunObserver | None = None,
    ) -> None:
        self.agents = agents
        self.providers = providers
        self.store = store
        self.observer: RunObserver = observer or NullObserver()
        self._active: dict[str, RunRecord] = {}
        self._idle = trio.Event()

    def statistics(self) -> RuntimeStatistics:
        queued = sum(1 for run in self._active.values() if run.phase == "queued")
        return RuntimeStatistics(active_runs=len(self._active), queued_runs=queued)

    def active_runs(self, session_key: str | None = None) -> list[RunRecord]:
        return [
            run
            for run in self._active.values()
            if session_key is None or run.session_key == session_key
        ]

    def kill(
        self,
        *,
        session_key: str | None = None,
        run_id: str | None = None,
        error: GatewayError | None = None,
    ) -> list[str]:
        """Abort the matching runs of this process (all of them when neither key nor id is
        given); each ends with ``error`` (default: "The run was aborted."). Returns their ids."""
        killed = []
        for run in list(self._active.values()):
            if (session_key is None or run.session_key == session_key) and (
                run_id is None or run.run_id == run_id
            ):
                run.killed = True
                run.abort_error = error
                run.scope.cancel()
                killed.append(run.run_id)
        return killed

    def configure(self, agents: AgentsSettings, providers: ProviderRegistry) -> ProviderRegistry:
        """Use these agents and providers for new runs; returns the replaced registry (runs
        already going keep using it: close it with ``aclose_when_unused``)."""
        old = self.providers
        self.agents = agents
        self.providers = providers
        return old

    async def wait_idle(self) -> None:
        """Return once no run is active in this process."""
        while self._active:
            self._idle = self._idle if not self._idle.is_set() else trio.Event()
            await self._idle.wait()

    async def run(
        self,
        request: RunRequest,
        send: trio.MemorySendChannel[RunEvent],
        record: RunRecord | None = None,
    ) -> None:
        """Run ``request`` to the end, pushing events into ``send`` and closing it.

        Provider failures become a final ``RunFailed`` event; this raises only ``Cancelled``
        (after recording the partial turn) or on a bug. A consumer that closes its receive side
        aborts the run. ``record`` (made here when not given) follows the run for logs and
        metrics; its ``outcome`` is set before this returns or raises.
        """
        if record is None:
            record = RunRecord(request.run_id, request.session.key, request.agent.id)
        # A reload may swap the providers; this run keeps the ones it started with.
        providers = self.providers
        providers.acquire()
        failure: RunFailed | None = None
        reply = Reply()
        self._active[request.run_id] = record
        self.observer.run_queued(record)
        try:
            async with send:
                with record.scope:
                    try:
                        lane_key = request.session.key if request.session.stateful else None
                        async with self.store.lane(lane_key) as lane:
                            record.phase = "waiting"
                            record.started_at = time.monotonic()
                            self.observer.run_started(record)
                            await self._run_in_lane(request, send, record, reply, lane, providers)
                        if lane.killed:
                            record.killed = True
                    except trio.BrokenResourceError:
                        logger.debug("run %s: consumer went away", request.run_id)
                        record.outcome = f"cancelled:{record.phase}"
                    except ConsumerStalled:
                        logger.warning(
                            "run %s: the client took nothing for %g s; aborting the run",
                            request.run_id, request.send_timeout,
                        )  # fmt: skip
                        record.outcome = "cancelled:stalled"
                    except Exception:
                        # A bug must not take the request (or the connection) down with it:
                        # the client gets an OpenAI-shaped 500 and the details stay in the log.
                        logger.exception("run %s failed unexpectedly", request.run_id)
                        failure = RunFailed(GatewayError("Internal server error"))
                        record.outcome = "error:internal"
                if record.killed:
                    failure = RunFailed(record.abort_error or RunAborted("The run was aborted."))
                    record.outcome = f"cancelled:{record.phase}"
                if failure is not None and record.outcome != "cancelled:stalled":
                    # Bounded: a consumer that stopped taking events must not pin the run here.
                    with (
                        contextlib.suppress(trio.BrokenResourceError),
                        trio.move_on_after(request.send_timeout or math.inf),
                    ):
                        await send.send(failure)
        finally:
            providers.release()
            del self._active[request.run_id]
            if not self._active:
                self._idle.set()
            record.ended_at = time.monotonic()
            record.usage = reply.usage
            if not record.outcome:
                # Only cancellation leaves here without an outcome.
                record.outcome = f"cancelled:{record.phase}"
            self.observer.run_ended(record)

    async def _run_in_lane(
        self,
        request: RunRequest,
        send: trio.MemorySendChannel[RunEvent],
        record: RunRecord,
        reply: Reply,
        lane: LaneHandle,
        providers: ProviderRegistry,
    ) -> None:
        # Until the stored history is known, the turn to record is the request's new turn: a run
        # killed this early still keeps what the user said.
        prompt = Prompt(list(request.messages), new_turn(request.messages))
        finished = False
        limit = request.timeout_seconds or self.agents.defaults.timeout_seconds
        try:
            if request.session.stateful:
                history = await self.store.context(
                    request.session.key, self.agents.defaults.history_limit
                )
                prompt = assemble(request.messages, history)
            with trio.move_on_after(limit) as timeout:
                await self._complete(request, prompt, reply, send, record, providers)
            if timeout.cancelled_caught and reply.error is None:
                error = GatewayError(
                    f"The agent run timed out after {limit:g} s.",
                    status=504,
                    type_="timeout_error",
                    code="timeout",
                )
                reply.add(RunFailed(error))
                await send.send(RunFailed(error))
            finished = True
            if reply.error is not None:
                record.outcome = f"error:{reply.error.code or reply.error.type}"
            else:
                record.outcome = "complete"
        finally:
            if request.session.stateful:
                status: TurnStatus = "error" if reply.error else "complete"
                if not finished or record.killed or lane.killed:
                    status = "aborted"
                await self._persist(request, prompt, reply, status)

    async def _complete(
        self,
        request: RunRequest,
        prompt: Prompt,
        reply: Reply,
        send: trio.MemorySendChannel[RunEvent],
        record: RunRecord,
        providers: ProviderRegistry,
    ) -> None:
        choice = request.model or self.agents.model_for(request.agent)
        system = system_prompt(self.agents.system_prompt_for(request.agent), request.system)

        send_timeout = request.send_timeout

        async def emit(event: ProviderEvent) -> None:
            event = _encodable(event)
            if record.first_token_at is None:
                record.first_token_at = time.monotonic()
                record.phase = "streaming"
                self.observer.first_token(record)
            reply.add(event)
            if send_timeout is None:
                await send.send(event)
                return
            try:
                send.send_nowait(event)  # the common case: room in the channel
            except trio.WouldBlock:
                with trio.move_on_after(send_timeout):
                    await send.send(event)
                    return
                raise ConsumerStalled from None

        chain = choice.chain
        for attempt, ref in enumerate(chain):
            provider, model = providers.resolve(ref)
            record.provider, record.model = provider.id, model
            model_request = ModelRequest(model, prompt.messages, system, request.params)
            try:
                await provider.stream(model_request, emit)
            except ProviderError as error:
                self.observer.upstream_error(provider.id, error.kind)
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
            except (trio.BrokenResourceError, ConsumerStalled):
                raise  # the consumer's problem, not the provider's: run() handles these
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


def _encodable(event: ProviderEvent) -> ProviderEvent:
    """``event`` with unpaired surrogates in its text replaced: an upstream may send them
    (escaped in its JSON), and neither the client's response nor the transcript could carry
    them."""
    if type(event) is TextDelta:
        if not encodable(event.text):
            return TextDelta(clean(event.text))
    elif type(event) is ToolCallDelta and not (
        encodable(event.arguments) and encodable(event.name or "")
    ):
        name = clean(event.name) if event.name is not None else None
        return dataclasses.replace(event, arguments=clean(event.arguments), name=name)
    return event
