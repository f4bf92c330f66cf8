"""The agent runtime: the one code path behind every completion, HTTP and WebSocket alike.

``open_run`` starts a run in the caller's nursery and returns its ``Run`` handle (see
``gateway.agents.run``). The run waits for admission (its session lane and a run slot), assembles
the prompt, asks the agent's model (then its fallbacks) for a completion and pushes every event
into its channel. Whatever ends it (the end of the reply, a failure, an abort for any reason),
a stateful run appends its turn to the transcript while it still holds its lane (shielded,
bounded), marked ``complete``, ``aborted`` or ``error``; then its typed outcome is set and the
observer told.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass
from functools import partial

import trio

from gateway.agents.completion import ConsumerStalled, Relay, complete
from gateway.agents.events import AbortReason, RunEvent, RunFailed, abort_error
from gateway.agents.observer import NullObserver, RunObserver
from gateway.agents.prompt import Prompt, assemble, new_turn, system_prompt
from gateway.agents.reply import Reply
from gateway.agents.run import Ending, Outcome, Phase, Run, RunRequest
from gateway.errors import GatewayError
from gateway.providers.registry import ProviderRegistry
from gateway.sessions.admission import Admission
from gateway.sessions.base import TranscriptStore, TurnStatus
from gateway.settings import AgentsSettings

logger = logging.getLogger("gateway.run")

# How long a shielded transcript write may delay a cancelled run's exit.
_PERSIST_TIMEOUT = 10.0


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
        transcripts: TranscriptStore,
        admission: Admission,
        observer: RunObserver | None = None,
    ) -> None:
        self.agents = agents
        self.providers = providers
        self.transcripts = transcripts
        self.admission = admission
        self.observer: RunObserver = observer or NullObserver()
        self._active: dict[Run, None] = {}
        self._idle = trio.Event()
        self._idle.set()

    def open_run(self, request: RunRequest, nursery: trio.Nursery) -> Run:
        """Start ``request`` in ``nursery`` (the caller's: the run never outlives it) and return
        its handle; the caller drains ``run.events``."""
        run = Run(request)
        if not self._active:
            self._idle = trio.Event()
        self._active[run] = None
        self.observer.run_queued(run)
        nursery.start_soon(self._drive, run, self.providers)
        return run

    def statistics(self) -> RuntimeStatistics:
        queued = sum(1 for run in self._active if run.phase is Phase.QUEUED)
        return RuntimeStatistics(active_runs=len(self._active), queued_runs=queued)

    def active_runs(self, session_key: str | None = None) -> list[Run]:
        return [r for r in self._active if session_key is None or r.session_key == session_key]

    def abort_runs(
        self, reason: AbortReason, *, session_key: str | None = None, run_id: str | None = None
    ) -> list[str]:
        """Abort this process's runs on ``session_key`` (all keys: ``None``) with ``run_id``
        (any: ``None``), in any phase; returns their ids."""
        aborted = []
        for run in list(self._active):
            matches = (session_key is None or run.session_key == session_key) and (
                run_id is None or run.id == run_id
            )
            if matches and run.abort(reason):
                aborted.append(run.id)
        return aborted

    async def kill_session(self, key: str) -> bool:
        """Abort the session's active run wherever it runs (``KILLED``); returns whether there
        was one. A stateful session's active run is the one holding its lane (admission finds
        it, in any process); a stateless key belongs to one run, in this process."""
        for run in self._active:
            if run.session_key == key and not run.stateful:
                return run.abort(AbortReason.KILLED)
        return await self.admission.request_kill(key)

    def configure(self, agents: AgentsSettings, providers: ProviderRegistry) -> ProviderRegistry:
        """Use these agents and providers for new runs; returns the replaced registry (runs
        already going keep using it: close it with ``aclose_when_unused``)."""
        old = self.providers
        self.agents = agents
        self.providers = providers
        return old

    async def wait_idle(self) -> None:
        """Return once no run is active in this process."""
        await self._idle.wait()

    async def _drive(self, run: Run, providers: ProviderRegistry) -> None:
        """The run's task. Raises only ``Cancelled`` (its owner went away) or on a bug."""
        providers.acquire()
        reply = Reply()
        send = run._send
        internal: GatewayError | None = None
        try:
            async with send:
                with run._scope:
                    try:
                        await self._admitted(run, send, reply, providers)
                    except trio.BrokenResourceError:
                        run.abort_reason = run.abort_reason or AbortReason.CLIENT_GONE
                    except ConsumerStalled:
                        logger.warning(
                            "run %s: the client took nothing for %g s; aborting the run",
                            run.id, run.request.send_timeout,
                        )  # fmt: skip
                        run.abort_reason = run.abort_reason or AbortReason.STALLED
                    except GatewayError as error:
                        # A dependency refused in a way the client should hear about (the
                        # shared store is unreachable: 503 with Retry-After).
                        logger.warning("run %s: %s", run.id, error.message)
                        internal = error
                        reply.add(RunFailed(error))
                    except Exception:
                        # A bug must not take the request (or the connection) down with it:
                        # the client gets an OpenAI-shaped 500, the details stay in the log.
                        logger.exception("run %s failed unexpectedly", run.id)
                        internal = GatewayError("Internal server error")
                        reply.add(RunFailed(internal))
                tell = internal
                if run._scope.cancelled_caught and run.abort_reason is not None:
                    tell = abort_error(run.abort_reason)
                if tell is not None:
                    # Bounded: a consumer that stopped taking events must not pin the run.
                    with (
                        contextlib.suppress(trio.BrokenResourceError),
                        trio.move_on_after(run.request.send_timeout or math.inf),
                    ):
                        await send.send(RunFailed(tell, run.abort_reason))
        finally:
            providers.release()
            del self._active[run]
            if not self._active:
                self._idle.set()
            run.ended_at = time.monotonic()
            run.usage = reply.usage
            run.outcome = _outcome(run, reply)
            self.observer.run_ended(run)

    async def _admitted(
        self,
        run: Run,
        send: trio.MemorySendChannel[RunEvent],
        reply: Reply,
        providers: ProviderRegistry,
    ) -> None:
        key = run.session_key if run.stateful else None
        async with self.admission.admit(key, partial(run.abort, AbortReason.KILLED)):
            run.phase = Phase.WAITING
            run.started_at = time.monotonic()
            self.observer.run_started(run)
            await self._respond(run, Relay(run, send, reply, self.observer), providers)

    async def _respond(self, run: Run, relay: Relay, providers: ProviderRegistry) -> None:
        request = run.request
        # Until the stored history is known, the turn to record is the request's new turn: a run
        # aborted this early still keeps what the user said.
        prompt = Prompt(list(request.messages), new_turn(request.messages))
        finished = False
        agents = self.agents
        limit = request.timeout_seconds or agents.defaults.timeout_seconds
        try:
            if request.context is not None:
                prompt = Prompt([*request.context, *request.messages], list(request.messages))
            elif run.stateful:
                history = await self.transcripts.context(
                    run.session_key, agents.defaults.history_limit
                )
                prompt = assemble(request.messages, history)
            choice = request.model or agents.model_for(request.agent)
            system = system_prompt(agents.system_prompt_for(request.agent), request.system)
            with trio.move_on_after(limit) as deadline:
                await complete(relay, choice, prompt, system, providers, self.observer)
            if deadline.cancelled_caught and relay.reply.error is None:
                run.abort_reason = AbortReason.TIMEOUT
                timeout = GatewayError(
                    f"The agent run timed out after {limit:g} s.",
                    status=504,
                    type_="timeout_error",
                    code="timeout",
                )
                failed = RunFailed(timeout, AbortReason.TIMEOUT)
                relay.reply.add(failed)
                await relay.put(failed)
            finished = True
        finally:
            if run.stateful:
                reply = relay.reply
                status: TurnStatus = "error" if reply.error else "complete"
                if not finished or run.abort_reason in (AbortReason.KILLED, AbortReason.SHUTDOWN):
                    status = "aborted"
                failure = await self._persist(run, prompt, reply, status)
                if failure is not None and finished and reply.error is None:
                    # The answer ends after the turn is committed: a client must not take an
                    # unrecorded turn for a recorded one.
                    failed = RunFailed(failure)
                    reply.add(failed)
                    await relay.put(failed)

    async def _persist(
        self, run: Run, prompt: Prompt, reply: Reply, status: TurnStatus
    ) -> GatewayError | None:
        """Record the turn, shielded and bounded; returns what the client should hear if it
        could not be recorded."""
        messages = list(prompt.turn)
        if reply.has_output:
            messages.append(reply.message())
        usage = reply.usage.as_dict() if reply.usage else None
        request = run.request
        failure: GatewayError | None = None
        with trio.CancelScope(shield=True), trio.move_on_after(_PERSIST_TIMEOUT) as scope:
            try:
                await self.transcripts.append_turn(
                    run.session_key,
                    request.agent.id,
                    run.id,
                    messages,
                    status,
                    usage,
                    request.channel,
                )
            except GatewayError as error:  # the store is unavailable (503, Retry-After)
                logger.error("run %s: could not record the turn: %s", run.id, error.message)
                failure = error
            except Exception:
                logger.exception("run %s: could not record the turn", run.id)
                failure = GatewayError("Internal server error")
        if scope.cancelled_caught:
            logger.error("run %s: recording the turn timed out", run.id)
            failure = GatewayError(
                "The turn could not be recorded in time; try again.",
                status=503,
                code="store_unavailable",
                retry_after=1,
            )
        return failure


def _outcome(run: Run, reply: Reply) -> Outcome:
    """The typed outcome of a run that has ended (see ``Outcome``)."""
    if reply.error is not None and run.abort_reason in (None, AbortReason.TIMEOUT):
        error = reply.error
        return Outcome(Ending.FAILED, run.phase, run.abort_reason, error.code or error.type)
    if run.abort_reason is None and reply.finish_reason is not None:
        return Outcome(Ending.COMPLETE, run.phase)
    # Cancelled from outside, without a reason given: its owner (the client) went away.
    return Outcome(Ending.ABORTED, run.phase, run.abort_reason or AbortReason.CLIENT_GONE)
