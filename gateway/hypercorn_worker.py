"""What the app learns from the Hypercorn process it runs in, when launched by Hypercorn's CLI.

``hypercorn -k trio gateway.app:app`` starts a master process that spawns its workers with
``multiprocessing`` (start method ``spawn``), each running ``hypercorn.trio.run.trio_worker(config,
sockets, shutdown_event)``. The ASGI app is told nothing when a shutdown begins: the lifespan
``shutdown`` message comes only after every connection has ended or been cancelled at the end of
``--graceful-timeout``. What Hypercorn does give its worker is that ``shutdown_event``: the master's
SIGTERM/SIGINT handler sets it and the worker polls it (every 0.1 s) to stop accepting. The worker
process object keeps the arguments it was started with, so the app reads the same event, the
same ``Config`` (``graceful_timeout``, ``workers``) and the same listening sockets. Nothing here
installs a signal handler or changes how Hypercorn stops: the app only watches what Hypercorn
already watches (checked against Hypercorn 0.17 and 0.18; ``tests/e2e/test_hypercorn_launch.py``
fails if a release changes it).

``current()`` is ``None`` under ``gateway serve``, in tests and with ``hypercorn -w 0`` (no master,
no event: SIGINT there raises ``KeyboardInterrupt`` inside Hypercorn and SIGTERM kills at once).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

logger = logging.getLogger("gateway.serve")

# Hypercorn's worker entry points (the asyncio ones only matter for refusing to start).
_WORKER_FUNCTIONS = {
    ("hypercorn.trio.run", "trio_worker"),
    ("hypercorn.asyncio.run", "asyncio_worker"),
    ("hypercorn.asyncio.run", "uvloop_worker"),
}


class _Event(Protocol):
    def is_set(self) -> bool: ...

    def set(self) -> None: ...


@dataclass(frozen=True, slots=True)
class HypercornWorker:
    """This process is a worker of Hypercorn's CLI master."""

    shutdown_event: _Event
    graceful_timeout: float
    workers: int
    sockets: Sequence[socket.socket]

    @classmethod
    def current(cls) -> HypercornWorker | None:
        """The worker this process is, or ``None`` when it was not started by Hypercorn's CLI."""
        process: Any = multiprocessing.current_process()
        target = getattr(process, "_target", None)
        name = (getattr(target, "__module__", None), getattr(target, "__name__", None))
        if name not in _WORKER_FUNCTIONS:
            return None
        kwargs: dict[str, Any] = getattr(process, "_kwargs", None) or {}
        event, config = kwargs.get("shutdown_event"), kwargs.get("config")
        if event is None or not hasattr(event, "is_set") or config is None:
            logger.warning("unrecognised Hypercorn worker arguments; shutdown is Hypercorn's own")
            return None
        sockets = kwargs.get("sockets")
        listening = list(getattr(sockets, "insecure_sockets", ())) + list(
            getattr(sockets, "secure_sockets", ())
        )
        return cls(
            shutdown_event=event,
            graceful_timeout=float(getattr(config, "graceful_timeout", 3.0)),
            workers=int(getattr(config, "workers", 1)),
            sockets=listening,
        )

    def shutting_down(self) -> bool:
        return self.shutdown_event.is_set()

    def request_shutdown(self) -> None:
        """Make Hypercorn stop as if its master had been signalled (every worker stops)."""
        self.shutdown_event.set()

    def fail_startup(self) -> None:
        """The app cannot start: stop the master with a failing status.

        Hypercorn's master (0.18) exits 0 when its workers fail (it reads their exit codes a
        second time after forgetting them; hypercorn issue #269, fix pending in pull request
        #372), so a supervisor would take a configuration error for a clean stop. SIGTERM or
        SIGINT would go through its handler and exit 0 as well: SIGKILL is the one ending its
        caller sees as a failure. The worker itself then exits through Hypercorn's lifespan
        failure; the reason has been printed by then.
        """
        parent = multiprocessing.parent_process()
        if parent is None or parent.pid != os.getppid():
            return
        logger.error("stopping the Hypercorn master (pid %d) with a failing status", parent.pid)
        os.kill(parent.pid, signal.SIGKILL)
