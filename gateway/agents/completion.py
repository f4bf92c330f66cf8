"""Asking the agent's model for a completion: the provider call, fallbacks, and the per-event
path from the provider to the run's channel.

Every event a provider emits goes through ``Relay.emit``: text made encodable (an upstream may
escape unpaired surrogates), the first token noted on the run, the reply accumulated, then the
event put into the run's channel, without waiting when there is room. A consumer that takes
nothing for the run's ``send_timeout`` raises ``ConsumerStalled``; one that closed its side
raises ``trio.BrokenResourceError``: both are the consumer's doing and end the run, never a
fallback.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import trio

from gateway.agents.events import (
    Finish,
    ProviderEvent,
    RunEvent,
    RunFailed,
    TextDelta,
    ToolCallDelta,
)
from gateway.agents.observer import RunObserver
from gateway.agents.prompt import Prompt
from gateway.agents.reply import Reply
from gateway.agents.run import Phase, Run
from gateway.errors import GatewayError
from gateway.providers.base import ModelRequest, ProviderError
from gateway.providers.registry import ProviderRegistry
from gateway.settings import ModelChoice
from gateway.text import clean, encodable

logger = logging.getLogger("gateway.run")


class ConsumerStalled(Exception):
    """The run's consumer took no event for ``send_timeout`` seconds."""


class Relay:
    """The path of one run's events into its channel (see the module docstring)."""

    __slots__ = ("_observer", "_send", "_send_timeout", "reply", "run")

    def __init__(
        self,
        run: Run,
        send: trio.MemorySendChannel[RunEvent],
        reply: Reply,
        observer: RunObserver,
    ) -> None:
        self.run = run
        self.reply = reply
        self._send = send
        self._send_timeout = run.request.send_timeout
        self._observer = observer

    async def emit(self, event: ProviderEvent) -> None:
        if type(event) is TextDelta or type(event) is ToolCallDelta:
            event = _encodable(event)
            run = self.run
            if run.first_token_at is None:
                run.first_token_at = time.monotonic()
                run.phase = Phase.STREAMING
                self._observer.first_token(run)
        self.reply.add(event)
        await self.put(event)

    async def fail(self, error: GatewayError) -> None:
        """End the reply with ``error`` and tell the consumer."""
        failed = RunFailed(error)
        self.reply.add(failed)
        await self.put(failed)

    async def put(self, event: RunEvent) -> None:
        try:
            self._send.send_nowait(event)  # the common case: room in the channel
            return
        except trio.WouldBlock:
            pass
        if self._send_timeout is None:
            await self._send.send(event)
            return
        with trio.move_on_after(self._send_timeout):
            await self._send.send(event)
            return
        raise ConsumerStalled


async def complete(
    relay: Relay,
    choice: ModelChoice,
    prompt: Prompt,
    system: str | None,
    providers: ProviderRegistry,
    observer: RunObserver,
) -> None:
    """Stream a completion of ``prompt`` from ``choice``'s primary model, falling back to the
    next model on a retryable failure before the first event. A failure ends the reply with a
    ``RunFailed``; a reply the provider left without a finish reason gets one. Raises only the
    consumer's ``ConsumerStalled`` / ``BrokenResourceError`` or ``Cancelled``."""
    run, reply = relay.run, relay.reply
    chain = choice.chain
    for attempt, ref in enumerate(chain):
        provider, model = providers.resolve(ref)
        run.provider, run.model = provider.id, model
        request = ModelRequest(model, prompt.messages, system, run.request.params)
        try:
            await provider.stream(request, relay.emit)
        except ProviderError as error:
            observer.upstream_error(provider.id, error.kind)
            if reply.events == 0 and error.retryable and attempt + 1 < len(chain):
                logger.warning(
                    "run %s: %s failed before its first token (%s: %s); falling back to %s",
                    run.id, ref, error.kind, error.message, chain[attempt + 1],
                )  # fmt: skip
                continue
            await relay.fail(error)
            return
        except (trio.BrokenResourceError, ConsumerStalled):
            raise  # the consumer's problem, not the provider's
        except Exception:
            logger.exception("run %s: provider %s crashed", run.id, ref)
            await relay.fail(GatewayError("The model provider failed unexpectedly."))
            return
        if reply.finish_reason is None:
            await relay.emit(Finish("tool_calls" if reply.calls else "stop"))
        return


def _encodable(event: TextDelta | ToolCallDelta) -> TextDelta | ToolCallDelta:
    """``event`` with unpaired surrogates in its text replaced: neither the client's response
    nor the transcript could carry them."""
    if type(event) is TextDelta:
        if not encodable(event.text):
            return TextDelta(clean(event.text))
    elif type(event) is ToolCallDelta and not (
        encodable(event.arguments) and encodable(event.name or "")
    ):
        name = clean(event.name) if event.name is not None else None
        return dataclasses.replace(event, arguments=clean(event.arguments), name=name)
    return event
