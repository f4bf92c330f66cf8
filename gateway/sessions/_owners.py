"""Who holds a lane ticket, and whether that process still lives.

Each open store claims an identity: a random token and an exclusive ``flock`` on
``<owners dir>/<token>.lock``, held for as long as the store is open. The kernel drops the lock
when the process dies, however it dies (SIGKILL, OOM killer), so "can I lock that file?" is an
exact liveness test: no pid reuse to fool it, no heartbeat to tune, and it works across pid
namespaces (containers sharing the state directory). The pid is only kept for diagnostics.

The file is locked under a temporary name and then renamed into place, so a sweeper that only
looks at ``*.lock`` files never sees a claimed-but-not-yet-locked file and mistakes it for dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from pathlib import Path


class Owner:
    """This process's claimed identity. Blocking methods: call them from a worker thread."""

    def __init__(self, directory: Path, token: str, fd: int) -> None:
        self.directory = directory
        self.token = token
        self.pid = os.getpid()
        self._fd: int | None = fd

    @classmethod
    def claim(cls, directory: Path) -> Owner:
        """Create and lock a fresh identity file in ``directory`` (created if missing)."""
        directory.mkdir(parents=True, exist_ok=True)
        token = secrets.token_hex(8)
        temporary = directory / f".{token}.claim"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.rename(temporary, _lock_path(directory, token))
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        return cls(directory, token, fd)

    def release(self) -> None:
        """Give the identity up (idempotent). Remove this owner's tickets first: once the file
        is gone, other processes would treat any ticket left behind as a dead owner's."""
        if self._fd is None:
            return
        _lock_path(self.directory, self.token).unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def is_alive(directory: Path, token: str) -> bool:
    """Whether the owner ``token`` still holds its identity. A missing file means dead."""
    try:
        fd = os.open(_lock_path(directory, token), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        # Closing drops the shared lock we may have taken on a dead owner's file.
        os.close(fd)
    return False


def forget(directory: Path, token: str) -> None:
    """Remove a dead owner's file (after its tickets are gone)."""
    _lock_path(directory, token).unlink(missing_ok=True)


def sweep(directory: Path, keep: str) -> list[str]:
    """Remove the files of dead owners other than ``keep``; returns their tokens."""
    dead = []
    with contextlib.suppress(FileNotFoundError):
        for path in directory.glob("*.lock"):
            token = path.stem
            if token != keep and not is_alive(directory, token):
                forget(directory, token)
                dead.append(token)
    return dead


def _lock_path(directory: Path, token: str) -> Path:
    return directory / f"{token}.lock"
