"""Doorbells: one process telling another "poll now" instead of letting it sleep out its poll.

Polling alone makes every hand-off between processes (a session lane, a run slot, a kill
request) wait for the receiver's next poll: 15 ms on average at the default interval, which
under a saturated ``maxConcurrent`` left run slots idle three quarters of the time in a 4-worker
benchmark of 1 ms runs. So after a commit that admits another process's ticket or asks it to
kill a run, we ring that process's doorbell: a datagram to a Linux abstract-namespace Unix
socket named after its owner token. Abstract names need no file, vanish with their process, and
have no path length limit.

A ring carries nothing: it only makes the receiver poll the database at once, and the database
stays the only source of truth. A lost ring (full socket buffer, a process in another network
namespace, a platform without abstract sockets) costs at most one poll interval.
"""

from __future__ import annotations

import contextlib
import socket
import sys

import trio

_PREFIX = "\0openclaw-gateway-lanes-"


class Doorbell:
    """The doorbell of one owner, and the means to ring other owners'."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._listener: trio.socket.SocketType | None = None
        self._sender: socket.socket | None = None

    async def open(self) -> bool:
        """Start listening; ``False`` (polling only) where abstract sockets are unavailable."""
        if not sys.platform.startswith("linux"):
            return False
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            await listener.bind(_PREFIX + self._token)
        except OSError:
            listener.close()
            sender.close()
            return False
        sender.setblocking(False)
        self._listener, self._sender = listener, sender
        return True

    async def wait(self) -> None:
        """Wait for the next ring (forever if the doorbell could not open)."""
        if self._listener is None:
            await trio.sleep_forever()
        assert self._listener is not None
        await self._listener.recv(16)

    def ring(self, token: str) -> None:
        """Ask owner ``token`` to poll now. Never blocks, never raises: a ring is a hint."""
        if self._sender is None or token == self._token:
            return
        # Gone, in another namespace, or its buffer is full: it will poll anyway.
        with contextlib.suppress(OSError):
            self._sender.sendto(b"!", _PREFIX + token)

    def close(self) -> None:
        for sock in (self._listener, self._sender):
            if sock is not None:
                sock.close()
        self._listener = self._sender = None
