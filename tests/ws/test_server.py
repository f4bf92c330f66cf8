"""The wiring helpers: Hypercorn options, telling WebSocket-only paths apart."""

from __future__ import annotations

from hypercorn.config import Config
from quart_trio import QuartTrio

from gateway.http.routes import only_websocket_routes
from gateway.ws import Policy, configure_hypercorn


def test_configure_hypercorn() -> None:
    config = configure_hypercorn(Config())
    assert config.websocket_max_message_size >= Policy().max_payload
    assert config.websocket_ping_interval == 25.0
    mine = Config()
    mine.websocket_ping_interval = 5.0
    mine.websocket_max_message_size = 100 * 1024 * 1024
    configure_hypercorn(mine, Policy(max_payload=1024))
    assert (mine.websocket_ping_interval, mine.websocket_max_message_size) == (
        5.0,
        100 * 1024 * 1024,
    )


def test_only_websocket_routes() -> None:
    app = QuartTrio("t")

    async def view() -> str:
        return ""

    async def ws(path: str = "") -> None:
        return None

    app.add_url_rule("/v1/models", "models", view, methods=["GET"])
    app.add_url_rule("/only-post", "post", view, methods=["POST"])
    app.add_websocket("/", "ws", ws)
    app.add_websocket("/<path:path>", "ws_path", ws)
    assert only_websocket_routes(app, "/")
    assert only_websocket_routes(app, "/anything/else")
    assert not only_websocket_routes(app, "/v1/models")
    assert not only_websocket_routes(app, "/only-post")
