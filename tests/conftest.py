"""Session-wide checks.

Every process a test starts must be stopped by that test, children included. Each test session
marks its environment (inherited by every process it starts, directly or not), and at the end
of the session any process still carrying the mark fails the run: it is listed with the test
that started it, then killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import Cluster, throwaway_cluster

MARK = "GATEWAY_TEST_SESSION"
# Processes get this long after the last test to finish exiting (an orphaned worker stops
# within about a second of its parent's death).
_SETTLE_SECONDS = 3.0


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault(MARK, uuid.uuid4().hex)


def leftover_processes(mark: str) -> dict[int, str]:
    """Live processes (other than this one) whose environment carries ``MARK=mark``: pid →
    what they are and which test started them."""
    found: dict[int, str] = {}
    needle = f"{MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle not in environ or state == "Z":
            continue
        test = next(
            (
                v.split(b"=", 1)[1].decode()
                for v in environ
                if v.startswith(b"PYTEST_CURRENT_TEST=")
            ),
            "?",
        )
        found[int(entry.name)] = f"{command.strip()[:120]} (started by {test})"
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    mark = os.environ.get(MARK)
    if not mark or not Path("/proc/self/environ").exists():
        return
    deadline = time.monotonic() + _SETTLE_SECONDS
    left = leftover_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = leftover_processes(mark)
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  pid {pid}: {what}" for pid, what in sorted(left.items())]
    message = "processes started by tests are still running:\n" + "\n".join(lines)
    if reporter is not None:
        reporter.write_line(message, red=True)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """One PostgreSQL cluster for the session (``tests.postgres``); skipped without binaries."""
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(postgres: Cluster) -> str:
    """A fresh database in the session's cluster."""
    return postgres.database()
