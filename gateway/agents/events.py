"""The events of an agent run: what its provider emitted, then ``RunFailed`` when it fails or is
aborted. Consumers (the SSE writer, the JSON collector, the WebSocket sender) import the whole
vocabulary from here.

Why a run is aborted (``AbortReason``)::

    CLIENT_GONE   its consumer went away (the client disconnected, the connection closed)
    KILLED        POST /sessions/<key>/kill, WebSocket chat.abort
    SHUTDOWN      the server is stopping
    STALLED       its consumer took no event for gateway.http.sendTimeoutSeconds
    TIMEOUT       the run's own deadline (agents.defaults.timeoutSeconds, a request's timeout)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from gateway.errors import GatewayError
from gateway.providers.events import Finish, ProviderEvent, TextDelta, ToolCallDelta, Usage

__all__ = [
    "AbortReason",
    "Finish",
    "ProviderEvent",
    "RunAborted",
    "RunEvent",
    "RunFailed",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "abort_error",
]


class AbortReason(enum.Enum):
    CLIENT_GONE = "client_gone"
    KILLED = "killed"
    SHUTDOWN = "shutdown"
    STALLED = "stalled"
    TIMEOUT = "timeout"


class RunAborted(GatewayError):
    """The run was aborted on request (``/sessions/<key>/kill``, ``chat.abort``)."""

    status = 409
    type = "aborted"


def abort_error(reason: AbortReason) -> GatewayError | None:
    """What the consumer of a run aborted for ``reason`` is told (``None``: nobody is left to
    tell, or, for ``TIMEOUT``, the run says it itself with its deadline)."""
    if reason is AbortReason.KILLED:
        return RunAborted("The run was aborted.", code="aborted")
    if reason is AbortReason.SHUTDOWN:
        return GatewayError(
            "The server is shutting down.", status=503, type_="server_error", code="shutdown"
        )
    return None


@dataclass(frozen=True, slots=True)
class RunFailed:
    """The run failed, or was aborted (``reason``: why, when it was aborted or timed out); no
    further events follow."""

    error: GatewayError
    reason: AbortReason | None = None


RunEvent: TypeAlias = TextDelta | ToolCallDelta | Usage | Finish | RunFailed
