"""Our listening sockets: the options that drop dead peers, and breaking the connections
accepted on them when a shutdown cannot otherwise end (see ``gateway.lifecycle``).

Accepted connections inherit TCP keepalive and ``TCP_USER_TIMEOUT`` from the listening socket
(Linux), so setting them on the listener once covers every connection: a vanished client (a
laptop closed mid-stream) is dropped after about 30 s of unacknowledged data or 60 s of idle
probing, instead of pinning its task until the kernel gives up after many minutes.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection

# Dead peers are dropped after this long without an acknowledgement (TCP_USER_TIMEOUT) or,
# when idle, after keepalive probes fail.
TCP_USER_TIMEOUT_MS = 30_000
KEEPALIVE = (30, 10, 3)  # idle seconds, interval seconds, probes


def tune_listener(sock: socket.socket) -> None:
    """Keepalive and a user timeout on a listening TCP socket (inherited by what it accepts)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE[0])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE[1])
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE[2])
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)


def local_port(sock: socket.socket) -> int | None:
    try:
        return int(sock.getsockname()[1])
    except (OSError, IndexError, TypeError, ValueError):
        return None


def break_connections(ports: Collection[int]) -> int:
    """Shut down (both directions) every connected TCP socket of this process whose local port
    is one of ``ports`` (accepted client connections; upstream connections use other ports).
    A write blocked on such a socket then fails at once. Linux only (``/proc/self/fd``);
    returns how many were broken."""
    if not ports:
        return 0
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return 0
    broken = 0
    for fd in fds:
        try:
            dup = os.dup(fd)
        except OSError:
            continue
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM or sock.family not in (
                    socket.AF_INET,
                    socket.AF_INET6,
                ):
                    continue
                if sock.getsockname()[1] not in ports:
                    continue
                sock.getpeername()  # a listening socket has no peer: left alone
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue
            broken += 1
    return broken
