"""The ``gateway`` command: ``gateway serve [--config PATH] [--port N] [--bind HOST]``.

Runs Hypercorn programmatically on trio with the configuration's port and bind address. SIGINT
and SIGTERM stop accepting connections and give in-flight requests
``gateway.shutdownGraceSeconds`` before they are cancelled.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import hypercorn.trio
import trio
from hypercorn.config import Config

from gateway import __version__
from gateway.app import create_app
from gateway.auth import is_loopback
from gateway.config import ConfigError, load_settings
from gateway.settings import Settings

logger = logging.getLogger("gateway.cli")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Run the Gateway server.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="configuration file (JSON5)")
    serve.add_argument("--port", type=int, help="port to listen on (default: gateway.port)")
    serve.add_argument("--bind", help="host to listen on (default: from gateway.bind)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def hypercorn_config(settings: Settings, host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.worker_class = "trio"
    config.accesslog = None
    config.errorlog = "-"
    config.graceful_timeout = settings.gateway.shutdown_grace_seconds
    return config


async def _shutdown_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            logger.info("received %s, shutting down", signal.Signals(signum).name)
            return


def serve(settings: Settings, host: str, port: int) -> None:
    gateway = create_app(settings)
    config = hypercorn_config(settings, host, port)
    trio.run(partial(hypercorn.trio.serve, gateway.asgi, config, shutdown_trigger=_shutdown_signal))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"gateway: configuration error: {error}", file=sys.stderr)
        return 2
    if args.port is not None:
        settings = replace(settings, gateway=replace(settings.gateway, port=args.port))
    host = args.bind or settings.gateway.bind_host
    if settings.gateway.auth.mode == "none" and not is_loopback(host):
        print(
            f'gateway: refusing to listen on {host} with gateway.auth.mode "none"; '
            "configure a token or password, or bind to loopback",
            file=sys.stderr,
        )
        return 2
    serve(settings, host, settings.gateway.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
