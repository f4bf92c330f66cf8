"""The OpenClaw WebSocket protocol on the HTTP listener.

Pure parts: ``protocol`` (frames), ``handshake``, ``methods`` (dispatch and scopes),
``run_events`` (run events to protocol events). Trio parts: ``outbox``, ``hub``, ``runs``,
``handlers``, ``connection``; ``server`` wires them into the app. ``hypercorn_stream``
makes Hypercorn answer a WebSocket protocol error with a close frame (``create_app`` installs it).
"""

from gateway.ws.protocol import Policy
from gateway.ws.server import WebSocketGateway, configure_hypercorn

__all__ = ["Policy", "WebSocketGateway", "configure_hypercorn"]
