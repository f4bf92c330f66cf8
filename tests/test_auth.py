from __future__ import annotations

import pytest

from gateway.auth import Authenticator, bearer_secret, is_loopback
from gateway.settings import AuthSettings, RateLimitSettings


@pytest.mark.parametrize(
    ("header", "secret"),
    [
        (None, None),
        ("", None),
        ("Bearer abc", "abc"),
        ("bearer   abc  ", "abc"),
        ("BEARER abc", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer    ", None),
    ],
)
def test_bearer_secret(header: str | None, secret: str | None) -> None:
    assert bearer_secret(header) == secret


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("127.9.9.9")
    assert not is_loopback("10.0.0.1") and not is_loopback(None) and not is_loopback("nonsense")


def test_modes() -> None:
    token = Authenticator(AuthSettings(mode="token", token="t", password="p"))
    assert token.check("t", "1.2.3.4").ok
    assert token.check("p", "1.2.3.4").outcome == "invalid"
    assert token.check(None, "1.2.3.4").outcome == "missing"
    password = Authenticator(AuthSettings(mode="password", token="t", password="p"))
    assert password.check("p", None).ok and not password.check("t", None).ok
    assert Authenticator(AuthSettings(mode="none")).check(None, None).ok
    assert not Authenticator(AuthSettings(mode="token")).check("", None).ok


def test_mode_none_lets_in_loopback_clients_only() -> None:
    # A client a trusted proxy on loopback forwards for is not on loopback itself.
    none = Authenticator(AuthSettings(mode="none"))
    assert none.check(None, "127.0.0.1").ok and none.check(None, "::1").ok
    assert none.check("anything", None).ok  # no address (a Unix socket)
    assert none.check(None, "203.0.113.7").outcome == "invalid"


def test_rate_limit_window_lockout_and_reset() -> None:
    now = [0.0]
    limit = RateLimitSettings(max_attempts=3, window_ms=10_000, lockout_ms=60_000)
    auth = Authenticator(AuthSettings(token="t", rate_limit=limit), clock=lambda: now[0])
    ip = "203.0.113.5"
    assert auth.check("x", ip).outcome == "invalid"
    now[0] = 11.0  # the first failure left the window
    assert auth.check("x", ip).outcome == "invalid"
    assert auth.check("x", ip).outcome == "invalid"
    assert auth.check("x", ip).outcome == "invalid"  # the third: still 401, starts the lockout
    result = auth.check("x", ip)
    assert result.outcome == "locked" and result.retry_after == 60.0
    now[0] = 41.0
    locked = auth.check("t", ip)
    assert locked.outcome == "locked" and locked.retry_after == pytest.approx(30.0)
    assert auth.check("x", "203.0.113.6").outcome == "invalid"  # per address
    now[0] = 72.0
    assert auth.check("t", ip).ok
    assert auth.check("x", ip).outcome == "invalid"
    assert auth.check("t", ip).ok  # success reset the count
    assert auth.check("x", ip).outcome == "invalid"
    assert auth.check("x", ip).outcome == "invalid"
    assert auth.check("x", "127.0.0.1").outcome == "invalid"
    for _ in range(10):
        assert auth.check("x", "127.0.0.1").outcome == "invalid"  # loopback exempt
