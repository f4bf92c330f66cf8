"""The ``gateway`` command.

``gateway serve [--config PATH] [--port N] [--bind HOST] [--workers N]`` runs Hypercorn's trio
worker programmatically (see ``gateway.serve``); ``gateway reload`` asks a running server to
re-read its configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from gateway import __version__
from gateway.auth import is_loopback
from gateway.config import ConfigError, load_settings, resolve_config_path
from gateway.logs import configure_logging
from gateway.serve import pid_file, run_server, send_reload


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Run the Gateway server.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--config", help="configuration file (JSON5)")
    serve.add_argument("--port", type=int, help="port to listen on (default: gateway.port)")
    serve.add_argument("--bind", help="host to listen on (default: from gateway.bind)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing the port (default 1)"
    )
    serve.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"],
        help="default: logging.level from the configuration, else info",
    )  # fmt: skip
    reload = commands.add_parser("reload", help="make a running server re-read its config")
    reload.add_argument("--config", help="the configuration file the server was started with")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "reload":
        return _reload(args.config)
    configure_logging("text", args.log_level or "info")
    try:
        settings = load_settings(args.config)
    except ConfigError as error:
        print(f"gateway: configuration error: {error}", file=sys.stderr)
        return 2
    configure_logging(settings.logging.format, args.log_level or settings.logging.level)
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
    if args.workers < 1:
        print("gateway: --workers must be at least 1", file=sys.stderr)
        return 2
    # Workers (and reloads) read the configuration again: pin the file this command chose (a
    # default path with no file behind it stays unpinned: all defaults, as here).
    path = resolve_config_path(args.config, os.environ)
    if args.config or os.environ.get("OPENCLAW_CONFIG_PATH") or path.exists():
        os.environ["OPENCLAW_CONFIG_PATH"] = str(path)
    try:
        return run_server(settings, host, settings.gateway.port, args.workers)
    except OSError as error:  # the port is taken, the address is not ours, ...
        print(
            f"gateway: cannot listen on {host}:{settings.gateway.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 1


def _reload(config: str | None) -> int:
    try:
        settings = load_settings(config)
    except ConfigError as error:
        print(f"gateway: configuration error: {error}", file=sys.stderr)
        return 2
    path = pid_file(settings)
    if not send_reload(path):
        print(f"gateway: no running server found (no live pid in {path})", file=sys.stderr)
        return 1
    print("gateway: reload requested")
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
