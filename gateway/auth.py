"""Shared-secret authentication (token / password / none) and the failed-attempt rate limit.

The same ``Authenticator`` serves HTTP (``Authorization: Bearer``) and the WebSocket ``connect``
frame. Secrets are compared in constant time. The rate limit is per worker process and bounded in
memory; it counts wrong secrets only (a missing one is not an attempt) and a success resets it.
The client is the address ``gateway.client_address`` resolved: behind a trusted proxy, the
forwarded client, for the rate limit, its loopback exemption and mode ``none`` alike.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.settings import AuthSettings, RateLimitSettings

AuthOutcome = Literal["ok", "missing", "invalid", "locked"]

# Bounds the rate limiter's memory under a flood from many addresses.
_MAX_TRACKED_CLIENTS = 10_000


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: AuthOutcome
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def bearer_secret(authorization: str | None) -> str | None:
    """The secret of an ``Authorization: Bearer <secret>`` header (prefix case-insensitive)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    value = value.strip()
    return value or None


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def secrets_match(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


class _Attempts:
    __slots__ = ("failures", "locked_until")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.locked_until = 0.0


class RateLimiter:
    """Sliding-window count of wrong secrets per client address, with a lockout."""

    def __init__(
        self, settings: RateLimitSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._clients: OrderedDict[str, _Attempts] = OrderedDict()

    def exempt(self, client: str | None) -> bool:
        return self._settings.exempt_loopback and is_loopback(client)

    def locked_for(self, client: str) -> float | None:
        """Seconds left in the client's lockout, or ``None``."""
        attempts = self._clients.get(client)
        if attempts is None:
            return None
        left = attempts.locked_until - self._clock()
        return left if left > 0 else None

    def failure(self, client: str) -> None:
        """Count a wrong secret. The ``max_attempts``-th one within the window starts the
        lockout: it is still answered as a wrong secret, the attempts after it are refused."""
        now = self._clock()
        attempts = self._clients.pop(client, None) or _Attempts()
        self._clients[client] = attempts  # most recently used last
        window = self._settings.window_ms / 1000
        while attempts.failures and attempts.failures[0] <= now - window:
            attempts.failures.popleft()
        attempts.failures.append(now)
        while len(self._clients) > _MAX_TRACKED_CLIENTS:
            self._clients.popitem(last=False)
        if len(attempts.failures) >= self._settings.max_attempts:
            attempts.failures.clear()
            attempts.locked_until = now + self._settings.lockout_ms / 1000

    def success(self, client: str) -> None:
        self._clients.pop(client, None)


class Authenticator:
    """Decides whether a presented secret is accepted, for one auth configuration."""

    def __init__(self, settings: AuthSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.configure(settings)

    def configure(self, settings: AuthSettings) -> None:
        """Use these settings from now on (a reload); failed-attempt counts start afresh."""
        self.settings = settings
        self._limiter = (
            RateLimiter(settings.rate_limit, self._clock)
            if settings.rate_limit is not None
            else None
        )

    @property
    def mode(self) -> str:
        return self.settings.mode

    def check(self, presented: str | None, client: str | None) -> AuthResult:
        """Check ``presented`` from address ``client``; counts wrong secrets when rate-limited.
        Mode ``none`` lets in loopback clients only (a client forwarded by a trusted proxy on
        loopback is refused unless it is on loopback itself)."""
        if self.settings.mode == "none":
            if client is not None and not is_loopback(client):
                return AuthResult("invalid")
            return AuthResult("ok")
        limiter = self._limiter
        key = client or "unknown"
        if limiter is not None and not limiter.exempt(client):
            left = limiter.locked_for(key)
            if left is not None:
                return AuthResult("locked", left)
        else:
            limiter = None
        if presented is None:
            return AuthResult("missing")
        expected = self.settings.secret
        if expected is not None and secrets_match(presented, expected):
            if limiter is not None:
                limiter.success(key)
            return AuthResult("ok")
        if limiter is not None:
            limiter.failure(key)
        return AuthResult("invalid")
