"""The handshake state machine fed frames directly. No sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.auth import Authenticator, AuthResult
from gateway.settings import AuthSettings, RateLimitSettings
from gateway.ws.handshake import (
    Accepted,
    Handshake,
    Rejected,
    ServerInfo,
    hello_ok,
    negotiate,
)
from gateway.ws.protocol import Policy

TOKEN = "s3cret"


def connect(**changes: Any) -> str:
    params: dict[str, Any] = {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "cli", "version": "2026.9.6", "platform": "linux", "mode": "cli"},
        "caps": [],
        "auth": {"token": TOKEN},
        "role": "operator",
        "scopes": ["operator.write"],
    }
    params.update(changes)
    return json.dumps({"type": "req", "id": "1:c", "method": "connect", "params": params})


def token_auth() -> Authenticator:
    return Authenticator(AuthSettings(mode="token", token=TOKEN))


def feed(
    text: str | bytes, auth: Authenticator | None = None, mode: str = "token"
) -> Accepted | Rejected:
    authenticator = auth or token_auth()
    return Handshake("nonce-1", mode).receive(text, lambda s: authenticator.check(s, "10.0.0.1"))


def test_challenge_has_no_seq() -> None:
    assert Handshake("n", "token").challenge(123) == {
        "type": "event",
        "event": "connect.challenge",
        "payload": {"nonce": "n", "ts": 123},
    }


def test_accepted() -> None:
    handshake = Handshake("n", "token")
    outcome = handshake.receive(connect(), lambda s: token_auth().check(s, None))
    assert isinstance(outcome, Accepted)
    assert handshake.state == "accepted"
    assert outcome.request_id == "1:c"
    assert outcome.protocol == 4
    assert outcome.granted == {"operator.read", "operator.write"}
    assert outcome.params.client["id"] == "cli"
    with pytest.raises(RuntimeError):
        handshake.receive(connect(), lambda s: AuthResult("ok"))


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(3, 4, 4), (3, 3, 3), (4, 9, 4), (1, 2, None), (5, 6, None), (4, 3, None)],
)
def test_negotiate(low: int, high: int, expected: int | None) -> None:
    assert negotiate(low, high) == expected


def rejected(outcome: Accepted | Rejected) -> Rejected:
    assert isinstance(outcome, Rejected)
    return outcome


@pytest.mark.parametrize(
    "first",
    [
        '{"type":"req","id":"1:h","method":"health"}',
        '{"type":"event","event":"x","payload":{}}',
        "garbage",
    ],
)
def test_first_frame_must_be_connect(first: str) -> None:
    outcome = rejected(feed(first))
    assert (outcome.code, outcome.reason) == (
        1008,
        "invalid handshake: first request must be connect",
    )
    if "1:h" in first:
        assert outcome.response == {
            "type": "res",
            "id": "1:h",
            "ok": False,
            "error": {
                "code": "INVALID_REQUEST",
                "message": "invalid handshake: first request must be connect",
            },
        }
    else:
        assert outcome.response is None


def test_protocol_mismatch() -> None:
    outcome = rejected(feed(connect(minProtocol=5, maxProtocol=5)))
    assert outcome.code == 1002
    assert outcome.response is not None
    assert outcome.response["error"] == {
        "code": "INVALID_REQUEST",
        "message": "protocol mismatch",
        "details": {"expectedProtocol": 4},
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"minProtocol": "4"}, "minProtocol"),
        ({"maxProtocol": True}, "maxProtocol"),
        ({"client": "cli"}, "client"),
        ({"client": {"id": "cli", "version": "1", "platform": "linux"}}, "client.mode"),
        ({"scopes": "operator.read"}, "scopes"),
        ({"auth": "token"}, "auth"),
        ({"auth": {"token": 5}}, "auth.token"),
        ({"role": 1}, "role"),
    ],
)
def test_bad_connect_params(changes: dict[str, Any], field: str) -> None:
    outcome = rejected(feed(connect(**changes)))
    assert outcome.code == 1008
    assert outcome.response is not None
    error = outcome.response["error"]
    assert error["message"].startswith(f"invalid connect params: {field} ")
    assert error.get("details") == {"field": field}


def test_unsupported_role() -> None:
    outcome = rejected(feed(connect(role="node")))
    assert outcome.response is not None
    assert outcome.response["error"]["message"] == "unsupported role: node"


@pytest.mark.parametrize(
    ("auth", "reason"), [({"token": "wrong"}, "token_mismatch"), ({}, "token_missing")]
)
def test_bad_token(auth: dict[str, str], reason: str) -> None:
    outcome = rejected(feed(connect(auth=auth)))
    assert outcome.code == 1008
    assert outcome.response is not None
    error = outcome.response["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert error["message"] == (
        "unauthorized: gateway token mismatch "
        "(use this gateway's gateway.auth.token or pair the device)"
    )
    assert error["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    assert error["details"]["authReason"] == reason
    assert outcome.reason == error["message"]


def test_password_mode_reads_the_password() -> None:
    auth = Authenticator(AuthSettings(mode="password", password="pw"))
    assert isinstance(feed(connect(auth={"password": "pw"}), auth, "password"), Accepted)
    outcome = rejected(feed(connect(auth={"token": "pw"}), auth, "password"))
    assert outcome.response is not None
    assert outcome.response["error"]["details"]["code"] == "AUTH_PASSWORD_MISMATCH"


def test_lockout_counts_with_the_http_limiter() -> None:
    limit = RateLimitSettings(
        max_attempts=2, window_ms=60_000, lockout_ms=30_000, exempt_loopback=False
    )
    auth = Authenticator(AuthSettings(mode="token", token=TOKEN, rate_limit=limit))
    rejected(feed(connect(auth={"token": "x"}), auth))
    second = rejected(feed(connect(auth={"token": "x"}), auth))  # still a mismatch
    assert second.response is not None
    assert second.response["error"]["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    outcome = rejected(feed(connect(auth={"token": "x"}), auth))
    assert outcome.response is not None
    error = outcome.response["error"]
    assert error["details"]["code"] == "AUTH_RATE_LIMITED"
    assert error["retryable"] is True
    assert error["retryAfterMs"] == 30_000
    # Locked out: even the right secret is refused now.
    assert isinstance(feed(connect(), auth), Rejected)


def test_timeout_and_too_large() -> None:
    assert Handshake("n", "token").timed_out() == Rejected(None, 1008, "handshake timeout")
    too_big = Handshake("n", "token").too_large()
    assert (too_big.code, too_big.response) == (1009, None)


def test_hello_ok_shape() -> None:
    outcome = feed(connect(minProtocol=3, maxProtocol=3))
    assert isinstance(outcome, Accepted)
    server = ServerInfo("1.2.3", "conn-1", ["health"], ["tick"], {"presence": []}, Policy())
    assert hello_ok(outcome, server, "token") == {
        "type": "res",
        "id": "1:c",
        "ok": True,
        "payload": {
            "type": "hello-ok",
            "protocol": 3,
            "server": {"version": "1.2.3", "connId": "conn-1"},
            "features": {"methods": ["health"], "events": ["tick"]},
            "snapshot": {"presence": []},
            "auth": {"method": "token", "role": "operator", "scopes": ["operator.write"]},
            "policy": {
                "maxPayload": 26214400,
                "maxBufferedBytes": 52428800,
                "tickIntervalMs": 30000,
            },
        },
    }
