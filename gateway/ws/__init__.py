"""The OpenClaw WebSocket protocol on the HTTP listener.

Pure parts: ``protocol`` (frames), ``handshake``, ``methods`` (dispatch and scopes),
``run_events`` (run events to protocol events). Trio parts: ``outbox``, ``hub``, ``runs``,
``handlers``, ``connection``; ``server`` wires them into the app.
"""

from gateway.ws.protocol import Policy
from gateway.ws.server import WebSocketGateway, configure_hypercorn

__all__ = ["Policy", "WebSocketGateway", "configure_hypercorn"]
