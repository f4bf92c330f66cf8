"""Starting, publishing and aborting agent runs for WebSocket clients.

Every run goes through ``AgentRuntime.run`` (the same lanes, providers and transcripts as HTTP),
on a stateful session. Its publisher task (``_publish``) reads the run's events from a bounded
channel, turns them into protocol events and hands them to the hub, which never waits; so a slow
or vanished client never stalls the upstream read.

Ownership: a run lives in the nursery of the connection that started it and is cancelled when
that connection closes, unless ``gateway.ws.detachRunsOnClose`` puts it in the app's nursery
(then it runs on, and its events still reach the session's followers).

Aborting (``abort``) goes through the run's handle, as for HTTP runs: the upstream is closed, the
transcript records the turn as aborted, and the followers get ``chat`` ``aborted`` plus ``agent``
``lifecycle`` ``end`` with ``aborted: true``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from gateway.agents.events import AbortReason, RunEvent, TextDelta
from gateway.agents.routing import SessionTarget
from gateway.agents.run import Run, RunRequest
from gateway.agents.runtime import AgentRuntime
from gateway.settings import AgentSettings, ModelChoice
from gateway.ws.hub import Hub, Peer, RunTicket
from gateway.ws.protocol import error_response, ok_response
from gateway.ws.run_events import RunTranslator

logger = logging.getLogger("gateway.ws.runs")

# At most this many text fragments already waiting are merged into one event.
MAX_COALESCED = 64


# The ``stopReason`` of a run that ended without its last event; ``None``: the translator's own
# (``chat.abort``'s ``rpc``, a kill's ``killed``).
_STOP_REASONS: dict[AbortReason | None, str | None] = {  # anything else: "aborted"
    AbortReason.KILLED: None,
    AbortReason.SHUTDOWN: "shutdown",
}


def now_ms() -> int:
    return int(time.time() * 1000)


def coalesce(first: RunEvent, receive: trio.MemoryReceiveChannel[RunEvent]) -> list[RunEvent]:
    """``first`` merged with the text fragments already waiting behind it (without waiting).

    Every delta event repeats the reply so far, so a publisher that falls behind a fast model
    catches up by sending fewer, larger deltas instead of falling further behind.
    """
    if type(first) is not TextDelta:
        return [first]
    parts = [first.text]
    rest: list[RunEvent] = []
    while len(parts) < MAX_COALESCED:
        try:
            event = receive.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        if type(event) is not TextDelta:
            rest.append(event)
            break
        parts.append(event.text)
    if len(parts) == 1:
        return [first, *rest]
    return [TextDelta("".join(parts)), *rest]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """A validated run request from ``agent`` or ``chat.send``."""

    run_id: str
    agent: AgentSettings
    session_key: str
    message: str
    system: str | None = None
    model: ModelChoice | None = None
    timeout_seconds: float | None = None

    def request(self) -> RunRequest:
        return RunRequest(
            run_id=self.run_id,
            agent=self.agent,
            session=SessionTarget(self.session_key, stateful=True),
            messages=[{"role": "user", "content": self.message}],
            system=self.system,
            model=self.model,
            timeout_seconds=self.timeout_seconds,
            stream=True,
        )


class Runs:
    """Runs of WebSocket clients in this process (their registry is the hub)."""

    def __init__(
        self,
        runtime: AgentRuntime,
        hub: Hub,
        *,
        detach_on_close: bool,
        app_nursery: Callable[[], trio.Nursery],
    ) -> None:
        self.runtime = runtime
        self.hub = hub
        self.detach_on_close = detach_on_close
        self._app_nursery = app_nursery

    async def start(
        self,
        spec: RunSpec,
        origin: Peer,
        origin_nursery: trio.Nursery,
        accept: Callable[[], Awaitable[None]],
        answer_id: str | None = None,
    ) -> RunTicket:
        """Reserve the run id, send the acceptance (``accept``), then start the run; returns
        without waiting for it.

        Reserving first makes a concurrent request with the same id see the run in flight;
        accepting before starting puts the acceptance before every event of the run. If
        ``accept`` fails or is cancelled (the connection is closing) the run never starts and
        its id is released. ``answer_id``: the ``agent`` request to answer with the final result
        when the run ends. The run lives in ``origin_nursery`` (the connection's) unless runs
        are detached.
        """
        translator = RunTranslator(spec.run_id, spec.session_key, spec.agent.id, now_ms)
        ticket = RunTicket(translator, origin)
        self.hub.begin(ticket)
        try:
            await accept()
        except BaseException:
            self.hub.forget(ticket)
            raise
        nursery = self._app_nursery() if self.detach_on_close else origin_nursery
        run = ticket.run = self.runtime.open_run(spec.request(), nursery)
        nursery.start_soon(self._publish, ticket, run, answer_id)
        return ticket

    def abort(
        self,
        tickets: list[RunTicket],
        reason: AbortReason,
        *,
        session_key: str | None,
        run_id: str | None,
        stop_reason: str = "rpc",
    ) -> set[str]:
        """Abort the runs of this process on ``session_key`` (all keys: ``None``) and
        ``run_id`` (any: ``None``), WebSocket and HTTP alike; returns their ids. ``tickets``
        are the matching WebSocket runs: they report ``stop_reason`` as their ``stopReason``."""
        for ticket in tickets:
            ticket.translator.abort_reason = stop_reason
        return set(self.runtime.abort_runs(reason, session_key=session_key, run_id=run_id))

    async def _publish(self, ticket: RunTicket, run: Run, answer_id: str | None) -> None:
        """Publish the run's events; then answer the ``agent`` request, if any.

        On cancellation (the connection closed, the server stopped) the run is cancelled with
        this task, and the followers still get the aborted events, published without waiting.
        """
        translator = ticket.translator
        try:
            self.hub.publish(ticket, translator.start())
            async with run.events as receive:
                async for event in receive:
                    for merged in coalesce(event, receive):
                        self.hub.publish(ticket, translator.feed(merged))
            self.hub.publish(ticket, translator.end())
        finally:
            # Only a cancellation gets here with the run unfinished: its connection or the
            # server went away under it (an abort ends the run with its own event).
            self.hub.publish(
                ticket, translator.abort(_STOP_REASONS.get(run.abort_reason, "aborted"))
            )
            answer = translator.final_answer()
            self.hub.finish(ticket, answer)
        if answer_id is None or ticket.origin is None:
            return
        frame = (
            ok_response(answer_id, answer.payload)
            if answer.error is None
            else error_response(answer_id, answer.error, answer.payload)
        )
        # The client may have gone (a detached run outlives its connection): nobody to tell.
        with contextlib.suppress(trio.ClosedResourceError):
            await ticket.origin.outbox.send_response(frame)
