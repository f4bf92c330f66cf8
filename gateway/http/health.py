"""Probes: ``/health`` and ``/healthz`` (alive), ``/ready`` and ``/readyz`` (ready to serve).

No auth, ``Cache-Control: no-store``, GET and HEAD only.
"""

from __future__ import annotations

from collections.abc import Callable

from quart import Response, request

from gateway.http.common import json_response, method_not_allowed

_NO_STORE = {"Cache-Control": "no-store"}


class Probes:
    def __init__(self, is_ready: Callable[[], bool]) -> None:
        self.is_ready = is_ready

    async def live(self) -> Response:
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed("GET, HEAD")
        return json_response({"ok": True, "status": "live"}, headers=_NO_STORE)

    async def ready(self) -> Response:
        if request.method not in ("GET", "HEAD"):
            return method_not_allowed("GET, HEAD")
        ready = self.is_ready()
        return json_response({"ready": ready}, 200 if ready else 503, headers=_NO_STORE)
