"""The methods a connection may call, the scope each needs, what a method sees of its caller,
and typed access to params. Pure.

Scopes nest: ``operator.admin`` grants everything, ``operator.write`` includes ``operator.read``.
With a shared secret a connection is granted the scopes it asked for in ``connect``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

import trio

from gateway.types import JSONObject
from gateway.ws.outbox import Outbox
from gateway.ws.protocol import FORBIDDEN, INVALID_REQUEST, WsError, invalid_params

Scope = Literal["operator.read", "operator.write", "operator.admin"]

READ: Final = "operator.read"
WRITE: Final = "operator.write"
ADMIN: Final = "operator.admin"

# What holding a scope implies.
_IMPLIED: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        ADMIN: frozenset({ADMIN, WRITE, READ}),
        WRITE: frozenset({WRITE, READ}),
        READ: frozenset({READ}),
    }
)


@dataclass(frozen=True, slots=True)
class MethodSpec:
    name: str
    scope: Scope


def _table(*specs: MethodSpec) -> Mapping[str, MethodSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


METHODS: Final = _table(
    MethodSpec("health", READ),
    MethodSpec("status", READ),
    MethodSpec("agents.list", READ),
    MethodSpec("models.list", READ),
    MethodSpec("sessions.list", READ),
    MethodSpec("chat.history", READ),
    # Destructive for every client of the session, like the reference's session admin methods.
    MethodSpec("sessions.reset", ADMIN),
    MethodSpec("sessions.delete", ADMIN),
    MethodSpec("agent", WRITE),
    MethodSpec("chat.send", WRITE),
    MethodSpec("chat.abort", WRITE),
)


ANSWERED: Final = object()
"""Returned by a method that has sent its response(s) itself (``agent`` answers twice)."""


class Caller(Protocol):
    """The connection a request came from, as methods see it."""

    @property
    def conn_id(self) -> str: ...

    @property
    def outbox(self) -> Outbox: ...

    @property
    def nursery(self) -> trio.Nursery:
        """Where the runs the caller starts live (unless runs are detached)."""
        ...

    async def respond(self, request_id: str, payload: Any) -> None: ...


def effective_scopes(requested: Iterable[str]) -> frozenset[str]:
    """Every scope the requested ones grant (unknown scope names grant nothing)."""
    granted: set[str] = set()
    for scope in requested:
        granted |= _IMPLIED.get(scope, frozenset())
    return frozenset(granted)


def authorize(method: str, granted: frozenset[str]) -> MethodSpec:
    """The method's spec if ``granted`` (from ``effective_scopes``) allows calling it.

    Raises ``WsError``: ``INVALID_REQUEST`` for an unknown method, ``FORBIDDEN`` with
    ``details.code`` ``MISSING_SCOPE`` for a missing scope.
    """
    spec = METHODS.get(method)
    if spec is None:
        raise WsError(INVALID_REQUEST, f"unknown method: {method}")
    if spec.scope not in granted:
        raise WsError(
            FORBIDDEN,
            f"missing scope: {spec.scope}",
            details={"code": "MISSING_SCOPE", "missingScope": spec.scope},
        )
    return spec


class Params:
    """Read and validate one request's params; every error names the method and the field."""

    def __init__(self, method: str, params: JSONObject) -> None:
        self.method = method
        self.params = params

    def _error(self, name: str, problem: str) -> WsError:
        return invalid_params(self.method, f"{name} {problem}", name)

    def string(self, name: str, *, required: bool = False, max_length: int = 10_000) -> str | None:
        """A string param, trimmed; an empty string counts as absent."""
        value = self.params.get(name)
        if value is None:
            if required:
                raise invalid_params(self.method, f"missing required property '{name}'", name)
            return None
        if not isinstance(value, str):
            raise self._error(name, "must be a string")
        value = value.strip()
        if "\x00" in value:
            raise self._error(name, "must not contain NUL characters")
        if len(value) > max_length:
            raise self._error(name, f"must be at most {max_length} characters")
        if not value:
            if required:
                raise self._error(name, "must be a non-empty string")
            return None
        return value

    def required_string(self, name: str, *, max_length: int = 10_000) -> str:
        value = self.string(name, required=True, max_length=max_length)
        assert value is not None
        return value

    def text(self, name: str, *, max_length: int) -> str:
        """A required string kept as sent (a message may start or end with spaces)."""
        value = self.params.get(name)
        if value is None:
            raise invalid_params(self.method, f"missing required property '{name}'", name)
        if not isinstance(value, str):
            raise self._error(name, "must be a string")
        if not value.strip():
            raise self._error(name, "must be a non-empty string")
        if len(value) > max_length:
            raise self._error(name, f"must be at most {max_length} characters")
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        value = self.params.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(name, "must be an integer")
        if isinstance(value, float) and not value.is_integer():
            raise self._error(name, "must be an integer")
        if not minimum <= value <= maximum:
            raise self._error(name, f"must be from {minimum} to {maximum}")
        return int(value)

    def number(self, name: str, *, minimum: float, maximum: float) -> float | None:
        value = self.params.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise self._error(name, "must be a number")
        if not minimum <= value <= maximum:
            raise self._error(name, f"must be from {minimum:g} to {maximum:g}")
        return float(value)

    def string_list(self, name: str) -> list[str]:
        value = self.params.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._error(name, "must be an array of strings")
        return list(value)
