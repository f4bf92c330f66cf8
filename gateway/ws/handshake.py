"""The connection handshake as a state machine. Pure: the driver feeds it frames and sends what
it returns.

1. Right after the upgrade the server sends ``connect.challenge`` (``challenge()``).
2. The first client frame must be a ``connect`` request (``receive()``). Outcomes:
   - anything else first: ``INVALID_REQUEST`` "invalid handshake: first request must be
     connect", close 1008;
   - bad connect params: ``INVALID_REQUEST`` naming the field, close 1008;
   - no protocol version in common with ``3..4``: ``INVALID_REQUEST`` "protocol mismatch" with
     ``details.expectedProtocol``, close 1002;
   - a bad or missing secret: ``INVALID_REQUEST`` "unauthorized: ..." with ``details.code``
     ``AUTH_TOKEN_MISMATCH`` (``AUTH_PASSWORD_MISMATCH`` in password mode), close 1008;
   - else ``Accepted``, answered with ``hello_ok(...)``.
3. No frame in time (``timed_out()``): close 1008. A frame over the pre-handshake limit
   (``too_large()``): close 1009.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.auth import AuthResult
from gateway.types import JSONObject
from gateway.ws.methods import effective_scopes
from gateway.ws.protocol import (
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    INVALID_REQUEST,
    MAX_PROTOCOL_VERSION,
    MIN_PROTOCOL_VERSION,
    EventFrame,
    FrameError,
    Policy,
    Request,
    ResponseFrame,
    WsError,
    close_reason,
    error_response,
    event_frame,
    ok_response,
    parse_request,
)

HandshakeState = Literal["challenged", "accepted", "rejected"]
Authenticate = Callable[[str | None], AuthResult]

FIRST_MUST_BE_CONNECT = "invalid handshake: first request must be connect"
_SUPPORTED_ROLES = ("operator",)


@dataclass(frozen=True, slots=True)
class ConnectParams:
    min_protocol: int
    max_protocol: int
    client: JSONObject
    role: str
    scopes: tuple[str, ...]
    token: str | None
    password: str | None


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: str
    params: ConnectParams
    protocol: int
    granted: frozenset[str]


@dataclass(frozen=True, slots=True)
class Rejected:
    """Send ``response`` (when there is a request to answer), then close with ``code``."""

    response: ResponseFrame | None
    code: int
    reason: str


class Handshake:
    """One connection's handshake; ``state`` moves from ``challenged`` to ``accepted`` or
    ``rejected`` exactly once."""

    def __init__(self, nonce: str, auth_mode: str) -> None:
        self.nonce = nonce
        self.auth_mode = auth_mode
        self.state: HandshakeState = "challenged"

    def challenge(self, now_ms: int) -> EventFrame:
        """The first frame of every connection; it carries no ``seq``."""
        return event_frame("connect.challenge", {"nonce": self.nonce, "ts": now_ms})

    def receive(self, text: str | bytes, authenticate: Authenticate) -> Accepted | Rejected:
        """Decide on the client's first frame. ``authenticate`` checks the presented secret
        (the token or password, whichever the auth mode uses) and counts failures."""
        self._expect_challenged()
        try:
            request = parse_request(text)
        except FrameError as error:
            return self._reject(error.request_id, FIRST_MUST_BE_CONNECT)
        if request.method != "connect":
            return self._reject(request.id, FIRST_MUST_BE_CONNECT)
        try:
            params = parse_connect_params(request)
        except WsError as error:
            return self._reject(request.id, error.message, details=error.details)
        protocol = negotiate(params.min_protocol, params.max_protocol)
        if protocol is None:
            return self._reject(
                request.id,
                "protocol mismatch",
                details={"expectedProtocol": MAX_PROTOCOL_VERSION},
                code=CLOSE_PROTOCOL_ERROR,
            )
        if params.role not in _SUPPORTED_ROLES:
            return self._reject(request.id, f"unsupported role: {params.role}")
        presented = params.password if self.auth_mode == "password" else params.token
        result = authenticate(presented)
        if not result.ok:
            refusal = auth_error(self.auth_mode, result, presented is None)
            self.state = "rejected"
            response = error_response(request.id, refusal)
            return Rejected(response, CLOSE_POLICY_VIOLATION, close_reason(refusal.message))
        self.state = "accepted"
        return Accepted(request.id, params, protocol, effective_scopes(params.scopes))

    def timed_out(self) -> Rejected:
        self._expect_challenged()
        self.state = "rejected"
        return Rejected(None, CLOSE_POLICY_VIOLATION, "handshake timeout")

    def too_large(self) -> Rejected:
        self._expect_challenged()
        self.state = "rejected"
        return Rejected(None, CLOSE_MESSAGE_TOO_BIG, "message too big before handshake")

    def _expect_challenged(self) -> None:
        if self.state != "challenged":
            raise RuntimeError(f"handshake already {self.state}")

    def _reject(
        self,
        request_id: str | None,
        message: str,
        *,
        details: JSONObject | None = None,
        code: int = CLOSE_POLICY_VIOLATION,
    ) -> Rejected:
        self.state = "rejected"
        error = WsError(INVALID_REQUEST, message, details=details)
        response = error_response(request_id, error) if request_id is not None else None
        return Rejected(response, code, close_reason(message))


def negotiate(min_protocol: int, max_protocol: int) -> int | None:
    """The highest version both sides speak, or ``None``."""
    version = min(max_protocol, MAX_PROTOCOL_VERSION)
    if version < max(min_protocol, MIN_PROTOCOL_VERSION):
        return None
    return version


def parse_connect_params(request: Request) -> ConnectParams:
    """Validate ``connect`` params. Raises ``WsError`` naming the first bad field."""
    params = request.params

    def fail(field: str, problem: str) -> WsError:
        return WsError(
            INVALID_REQUEST, f"invalid connect params: {field} {problem}", details={"field": field}
        )

    versions = []
    for name in ("minProtocol", "maxProtocol"):
        value = params.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(name, "must be an integer")
        versions.append(value)
    client = params.get("client")
    if not isinstance(client, dict):
        raise fail("client", "must be an object")
    for name in ("id", "version", "platform", "mode"):
        if not isinstance(client.get(name), str) or not client[name]:
            raise fail(f"client.{name}", "must be a non-empty string")
    role = params.get("role", "operator")
    if not isinstance(role, str):
        raise fail("role", "must be a string")
    scopes = params.get("scopes", [])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise fail("scopes", "must be an array of strings")
    auth = params.get("auth") or {}
    if not isinstance(auth, dict):
        raise fail("auth", "must be an object")
    secrets: list[str | None] = []
    for name in ("token", "password"):
        value = auth.get(name)
        if value is not None and not isinstance(value, str):
            raise fail(f"auth.{name}", "must be a string")
        secrets.append(value.strip() or None if isinstance(value, str) else None)
    return ConnectParams(
        versions[0], versions[1], dict(client), role, tuple(scopes), secrets[0], secrets[1]
    )


def auth_error(mode: str, result: AuthResult, missing: bool) -> WsError:
    """The connect error for a refused secret, in the reference's words and codes."""
    if result.outcome == "locked":
        retry_ms = round((result.retry_after or 0) * 1000)
        return WsError(
            INVALID_REQUEST,
            "unauthorized: too many failed authentication attempts (retry later)",
            details={"code": "AUTH_RATE_LIMITED", "authReason": "rate_limited"},
            retryable=True,
            retry_after_ms=retry_ms,
        )
    kind = "password" if mode == "password" else "token"
    return WsError(
        INVALID_REQUEST,
        f"unauthorized: gateway {kind} mismatch "
        f"(use this gateway's gateway.auth.{kind} or pair the device)",
        details={
            "code": f"AUTH_{kind.upper()}_MISMATCH",
            "authReason": f"{kind}_missing" if missing else f"{kind}_mismatch",
            "canRetryWithDeviceToken": False,
            "recommendedNextStep": "update_auth_credentials",
        },
    )


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What ``hello-ok`` says about the server; ``snapshot`` is the driver's current view."""

    version: str
    conn_id: str
    methods: Sequence[str]
    events: Sequence[str]
    snapshot: JSONObject
    policy: Policy


def hello_ok(accepted: Accepted, server: ServerInfo, auth_mode: str) -> ResponseFrame:
    """The success response to ``connect``."""
    payload: dict[str, Any] = {
        "type": "hello-ok",
        "protocol": accepted.protocol,
        "server": {"version": server.version, "connId": server.conn_id},
        "features": {"methods": list(server.methods), "events": list(server.events)},
        "snapshot": server.snapshot,
        "auth": {
            "method": auth_mode,
            "role": accepted.params.role,
            "scopes": list(accepted.params.scopes),
        },
        "policy": {
            "maxPayload": server.policy.max_payload,
            "maxBufferedBytes": server.policy.max_buffered_bytes,
            "tickIntervalMs": round(server.policy.tick_interval * 1000),
        },
    }
    return ok_response(accepted.request_id, payload)
