"""The preamble every HTTP route shares, in one place: the endpoint is enabled (else the plain
404 of an unknown path), the method is allowed (else 405 with ``Allow``, before auth), the
client is authenticated (else 401, or 429 while locked out). Only then the view runs."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Response, request

from gateway.http.common import AuthGuard, method_not_allowed, not_found

View = Callable[..., Awaitable[Response]]


def guarded(
    view: View,
    methods: tuple[str, ...],
    *,
    guard: AuthGuard | None,
    enabled: Callable[[], bool] | None = None,
) -> View:
    """``view`` behind the shared checks. ``guard`` ``None``: no authentication (probes).
    ``enabled`` is read per request, so a configuration reload turns endpoints on and off."""
    allow = ", ".join(methods)

    @functools.wraps(view)
    async def handler(**kwargs: Any) -> Response:
        if enabled is not None and not enabled():
            return not_found()
        if request.method not in methods:
            return method_not_allowed(allow)
        if guard is not None:
            denied = guard(request)
            if denied is not None:
                return denied
        return await view(**kwargs)

    return handler
