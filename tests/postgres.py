"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temporary directory, the server on
a free loopback port (TCP with a password, so the tests see what a real deployment sees), run as
an unprivileged user (PostgreSQL refuses to run as root: as root, the ``postgres`` user runs it).

``Cluster.start`` / ``stop`` / ``restart`` drive it (an outage is a stop); ``database()`` makes a
fresh database and returns its URL. Everything it starts is stopped by ``stop``, its process group
included. Tests that need one skip when no PostgreSQL server binaries are installed
(``.ci/run`` installs Debian's ``postgresql``).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.processes import free_port

PASSWORD = "s3cret-p@ss"
USER = "gateway"


def server_binaries() -> Path | None:
    """The directory of ``initdb`` / ``pg_ctl`` / ``postgres`` (the newest installed)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


class Cluster:
    def __init__(self, root: Path, binaries: Path) -> None:
        self.root = root
        self.binaries = binaries
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log = root / "postgres.log"
        self.port = free_port()
        self._names = itertools.count()
        self._as = self._runner()

    def _runner(self) -> list[str]:
        """The command prefix that runs as an unprivileged user (nothing when not root)."""
        if os.geteuid() != 0:
            return []
        owner = pwd.getpwnam("postgres")
        os.chown(self.root, owner.pw_uid, owner.pw_gid)
        return ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self._as, *args], check=False, capture_output=True, text=True, timeout=60
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}")
        return done

    def init(self) -> None:
        for directory in (self.data, self.sockets):
            directory.mkdir()
            if self._as:
                owner = pwd.getpwnam("postgres")
                os.chown(directory, owner.pw_uid, owner.pw_gid)
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        if self._as:
            owner = pwd.getpwnam("postgres")
            os.chown(password_file, owner.pw_uid, owner.pw_gid)
        self._run(
            str(self.binaries / "initdb"), "-D", str(self.data), "-U", USER,
            f"--pwfile={password_file}", "--auth-local=trust", "--auth-host=scram-sha-256",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        password_file.unlink()

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            str(self.binaries / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.log), "-w", "-t", "30", "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(
            str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop",
            check=False,
        )  # fmt: skip
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, database: str = "postgres", password: str = PASSWORD) -> str:
        secret = quote(password, safe="")
        return f"postgresql://{USER}:{secret}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A fresh, empty database; its URL."""
        name = f"t{next(self._names)}_{os.getpid()}"
        self._run(
            str(self.binaries / "psql"), "-h", str(self.sockets), "-p", str(self.port),
            "-U", USER, "-d", "postgres", "-c", f"CREATE DATABASE {name}",
        )  # fmt: skip
        return self.url(name)

    def sql(self, database: str, statement: str) -> str:
        """Run ``statement`` in ``database`` (by name) through the local socket; its output."""
        done = self._run(
            str(self.binaries / "psql"), "-h", str(self.sockets), "-p", str(self.port),
            "-U", USER, "-d", database, "-tAc", statement,
        )  # fmt: skip
        return done.stdout.strip()


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started cluster in a new temporary directory (outside pytest's, which the unprivileged
    user cannot enter), stopped and deleted on exit; skips the test without binaries."""
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server binaries (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="gateway-pg-"))
    cluster = Cluster(root, binaries)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
