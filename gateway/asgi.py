"""The ASGI layer around the Quart app.

- Refuses to run on anything but trio (Hypercorn's default worker is asyncio, on which every
  request to a quart-trio app would fail): startup fails with a message naming ``-k trio``.
- Gives every HTTP request a nursery of its own (``request_nursery``), opened before the app sees
  the request and cancelled as soon as the app is done with it, whether it finished or the client
  went away. Agent runs live there, so a run can outlast the route handler (its response headers
  wait for the first event) yet never outlive the request.
- Shields the final ``http.response.body`` send: quart-trio cancels the request scope on the
  post-response disconnect, which otherwise kills Hypercorn's keep-alive idle timer.
- Adds security headers to every response.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import sniffio
import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope

REQUEST_NURSERY = "gateway.request_nursery"
TRIO_REQUIRED = (
    "Gateway needs Hypercorn's trio worker: start it with `hypercorn -k trio gateway.app:app` "
    "(or use `gateway serve`)."
)
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def request_nursery(scope: Mapping[str, object]) -> trio.Nursery:
    """The nursery that owns the work of this HTTP request."""
    return cast(trio.Nursery, scope[REQUEST_NURSERY])


class GatewayASGI:
    """Wraps the Quart app; see the module docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if sniffio.current_async_library() != "trio":
            await _refuse(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], *_SECURITY_HEADERS]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                with trio.CancelScope(shield=True):
                    await send(message)
                return
            await send(message)

        async with trio.open_nursery() as nursery:
            cast(dict[str, object], scope)[REQUEST_NURSERY] = nursery
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                nursery.cancel_scope.cancel()


async def _refuse(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": TRIO_REQUIRED})
        return
    raise RuntimeError(TRIO_REQUIRED)
