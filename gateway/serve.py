"""Serving with Hypercorn's trio worker: one process, or a master and N workers sharing one
listening socket.

Shutdown (SIGTERM or SIGINT) follows ``gateway.lifecycle``: stop accepting and report not-ready,
let in-flight runs finish for ``gateway.shutdownGraceSeconds``, then abort the rest; the process
exits at the latest 1.5 s after the grace period, even with a client that stopped reading. A
worker whose supervisor dies shuts down on its own. SIGHUP re-reads the configuration (see
``Gateway.reload``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app
from prometheus_client.multiprocess import mark_process_dead

from gateway.app import Gateway, create_app
from gateway.config import ConfigError, load_settings
from gateway.listeners import local_port, tune_listener
from gateway.logs import configure_logging
from gateway.settings import Settings
from gateway.ws.server import configure_hypercorn

logger = logging.getLogger("gateway.serve")


def pid_file(settings: Settings) -> Path:
    return settings.gateway_dir / "gateway.pid"


def hypercorn_config(settings: Settings, host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.worker_class = "trio"
    config.accesslog = None
    config.errorlog = "-"
    # Our own drain decides when runs are aborted; Hypercorn only cancels what is left after.
    config.graceful_timeout = settings.gateway.shutdown_grace_seconds + 1
    return configure_hypercorn(config)


def create_sockets(config: Config) -> Sockets:
    """The listening sockets, with keepalive and a user timeout so dead peers are dropped
    (accepted connections inherit these options)."""
    sockets = config.create_sockets()
    for sock in sockets.insecure_sockets:
        tune_listener(sock)
        sock.listen(config.backlog)
    return sockets


async def serve_gateway(gateway: Gateway, config: Config, sockets: Sockets) -> None:
    """Serve until SIGTERM/SIGINT (or the supervisor's death, for a worker), then shut down as
    ``gateway.lifecycle`` says; SIGHUP reloads the configuration."""
    lifecycle = gateway.lifecycle
    for sock in sockets.insecure_sockets:
        port = local_port(sock)
        if port is not None:
            lifecycle.listen_ports.add(port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, gateway)
        app = wrap_app(gateway.asgi, config.wsgi_max_body_size, "asgi")
        await worker_serve(app, config, sockets=sockets, shutdown_trigger=lifecycle.stopping.wait)
        nursery.cancel_scope.cancel()


async def _watch_signals(gateway: Gateway) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                _reload(gateway)
            else:
                gateway.lifecycle.begin_shutdown(f"received {signal.Signals(signum).name}")


def _reload(gateway: Gateway) -> None:
    try:
        settings = load_settings(os.environ.get("OPENCLAW_CONFIG_PATH"))
    except ConfigError as error:
        logger.error("reload rejected, keeping the running configuration: %s", error)
        return
    gateway.reload(settings)


def _serve_process(
    settings: Settings,
    config: Config,
    sockets: Sockets,
    *,
    shared: bool,
    pid_path: Path | None = None,
) -> None:
    gateway = create_app(settings, shared=shared)
    if pid_path is not None:
        # A last-resort exit skips the ``finally`` that removes it.
        gateway.lifecycle.exit_hooks.append(partial(pid_path.unlink, missing_ok=True))
    trio.run(partial(serve_gateway, gateway, config, sockets))


def _worker(config: Config, sockets: Sockets, log_format: str, log_level: str) -> None:
    """A worker process: the configuration is re-read from the pinned file."""
    configure_logging(log_format, log_level)
    settings = load_settings(os.environ.get("OPENCLAW_CONFIG_PATH"))
    _serve_process(settings, config, sockets, shared=True)


def run_server(settings: Settings, host: str, port: int, workers: int) -> int:
    """Serve until shut down; returns the exit status."""
    config = hypercorn_config(settings, host, port)
    sockets = create_sockets(config)
    settings.gateway_dir.mkdir(parents=True, exist_ok=True)
    pid_path = pid_file(settings)
    pid_path.write_text(f"{os.getpid()}\n")
    try:
        if workers == 1:
            _serve_process(settings, config, sockets, shared=False, pid_path=pid_path)
            return 0
        return _supervise(settings, config, sockets, workers)
    finally:
        pid_path.unlink(missing_ok=True)


def _supervise(settings: Settings, config: Config, sockets: Sockets, workers: int) -> int:
    created = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metric samples here; /metrics on any worker sums them.
        created = tempfile.mkdtemp(prefix="metrics-", dir=settings.gateway_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    try:
        return _run_workers(config, sockets, workers, settings)
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def _run_workers(config: Config, sockets: Sockets, workers: int, settings: Settings) -> int:
    context = multiprocessing.get_context("spawn")
    args = (config, sockets, settings.logging.format, settings.logging.level)
    processes: list[Any] = [context.Process(target=_worker, args=args) for _ in range(workers)]
    for process in processes:
        process.start()

    def forward(signum: int, _frame: object) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGHUP if signum == signal.SIGHUP else signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    for process in processes:
        process.join()
        # Its live gauges (active and queued runs) no longer count.
        mark_process_dead(process.pid)  # type: ignore[no-untyped-call]
    failed = [p.exitcode for p in processes if p.exitcode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


def send_reload(path: Path) -> bool:
    """Send SIGHUP to the server whose pid is in ``path``; whether there was one."""
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (OSError, ValueError):
        return False
    return True
