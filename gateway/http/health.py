"""Probes: ``/health`` and ``/healthz`` (alive); ``/ready`` and ``/readyz`` (ready to serve:
started, not shutting down, and the stores answer).

No auth, ``Cache-Control: no-store``, GET and HEAD only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from quart import Response

from gateway.http.common import json_response

_NO_STORE = {"Cache-Control": "no-store"}


# A store that takes longer than this to answer counts as unreachable.
STORE_TIMEOUT = 2.0


class Probes:
    def __init__(
        self, is_ready: Callable[[], bool], store_ok: Callable[[], Awaitable[bool]]
    ) -> None:
        self.is_ready = is_ready
        self.store_ok = store_ok

    async def live(self) -> Response:
        return json_response({"ok": True, "status": "live"}, headers=_NO_STORE)

    async def ready(self) -> Response:
        ready = False
        if self.is_ready():
            with trio.move_on_after(STORE_TIMEOUT):
                ready = await self.store_ok()
        return json_response({"ready": ready}, 200 if ready else 503, headers=_NO_STORE)
