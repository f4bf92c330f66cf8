"""The dispatch table, scopes and params validation. No sockets."""

from __future__ import annotations

import pytest

from gateway.ws.methods import ADMIN, METHODS, READ, WRITE, Params, authorize, effective_scopes
from gateway.ws.protocol import WsError


def test_scopes_nest() -> None:
    assert effective_scopes([READ]) == {READ}
    assert effective_scopes([WRITE]) == {READ, WRITE}
    assert effective_scopes([ADMIN]) == {READ, WRITE, ADMIN}
    assert effective_scopes(["operator.pairing", "bogus"]) == frozenset()


def test_table() -> None:
    reads = {"health", "status", "agents.list", "models.list", "sessions.list", "chat.history"}
    writes = {"agent", "chat.send", "chat.abort"}
    admins = {"sessions.reset", "sessions.delete"}
    assert set(METHODS) == reads | writes | admins
    assert {m for m, spec in METHODS.items() if spec.scope == READ} == reads
    assert {m for m, spec in METHODS.items() if spec.scope == WRITE} == writes
    assert {m for m, spec in METHODS.items() if spec.scope == ADMIN} == admins


@pytest.mark.parametrize("method", sorted(METHODS))
def test_admin_may_call_everything(method: str) -> None:
    assert authorize(method, effective_scopes([ADMIN])).name == method


def test_missing_scope() -> None:
    with pytest.raises(WsError) as caught:
        authorize("agent", effective_scopes([READ]))
    assert caught.value.shape() == {
        "code": "FORBIDDEN",
        "message": "missing scope: operator.write",
        "details": {"code": "MISSING_SCOPE", "missingScope": "operator.write"},
    }
    with pytest.raises(WsError, match=r"missing scope: operator\.read"):
        authorize("health", frozenset())
    with pytest.raises(WsError, match=r"missing scope: operator\.admin"):
        authorize("sessions.delete", effective_scopes([WRITE]))


def test_unknown_method_comes_before_scopes() -> None:
    with pytest.raises(WsError) as caught:
        authorize("no.such.method", frozenset())
    assert caught.value.shape() == {
        "code": "INVALID_REQUEST",
        "message": "unknown method: no.such.method",
    }


def test_params() -> None:
    p = Params(
        "chat.send", {"s": " key ", "e": "  ", "n": 5, "f": 2.0, "x": 1.5, "b": True, "l": ["a"]}
    )
    assert p.string("s") == "key"
    assert p.string("e") is None
    assert p.string("missing") is None
    assert p.integer("n", minimum=1, maximum=10) == 5
    assert p.integer("f", minimum=1, maximum=10) == 2
    assert p.number("x", minimum=0, maximum=2) == 1.5
    assert p.string_list("l") == ["a"]
    assert p.string_list("missing") == []
    cases = [
        (
            lambda: p.required_string("missing"),
            "invalid chat.send params: missing required property 'missing'",
            "missing",
        ),
        (
            lambda: p.required_string("e"),
            "invalid chat.send params: e must be a non-empty string",
            "e",
        ),
        (lambda: p.string("n"), "invalid chat.send params: n must be a string", "n"),
        (
            lambda: p.string("s", max_length=2),
            "invalid chat.send params: s must be at most 2 characters",
            "s",
        ),
        (
            lambda: p.integer("x", minimum=0, maximum=9),
            "invalid chat.send params: x must be an integer",
            "x",
        ),
        (
            lambda: p.integer("b", minimum=0, maximum=9),
            "invalid chat.send params: b must be an integer",
            "b",
        ),
        (
            lambda: p.integer("n", minimum=6, maximum=9),
            "invalid chat.send params: n must be from 6 to 9",
            "n",
        ),
        (
            lambda: p.number("s", minimum=0, maximum=1),
            "invalid chat.send params: s must be a number",
            "s",
        ),
        (
            lambda: p.number("n", minimum=0, maximum=1),
            "invalid chat.send params: n must be from 0 to 1",
            "n",
        ),
        (
            lambda: p.text("e", max_length=10),
            "invalid chat.send params: e must be a non-empty string",
            "e",
        ),
        (lambda: p.text("n", max_length=10), "invalid chat.send params: n must be a string", "n"),
        (
            lambda: p.string_list("s"),
            "invalid chat.send params: s must be an array of strings",
            "s",
        ),
    ]
    for call, message, field in cases:
        with pytest.raises(WsError) as caught:
            call()
        assert caught.value.code == "INVALID_REQUEST"
        assert caught.value.message == message
        assert caught.value.details == {"field": field}
    assert Params("m", {"t": " spaced "}).text("t", max_length=10) == " spaced "
