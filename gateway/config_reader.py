"""A typed, path-aware reader over a parsed config document.

Every accessor either returns a value of the asked type or raises ``ConfigError`` naming the file
and the full key path (``gateway.auth.mode: expected one of token|password|none, got "tokn"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, overload


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


def _show(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Reader:
    """One object node of the document, at ``path``."""

    def __init__(
        self,
        source: str,
        warn: Callable[[str], None],
        data: dict[str, Any] | None = None,
        path: str = "",
    ) -> None:
        self._source = source
        self._warn = warn
        self._data: dict[str, Any] = data if data is not None else {}
        self._path = path

    def root(self, data: Any) -> Reader:
        if not isinstance(data, dict):
            raise ConfigError(
                f"{self._source}: expected an object at the top level, got {_kind(data)}"
            )
        return Reader(self._source, self._warn, data, "")

    def _key_path(self, key: str) -> str:
        if not key:
            return self._path or "<root>"
        if key.startswith("["):
            return f"{self._path}{key}"
        return f"{self._path}.{key}" if self._path else key

    def fail(self, key: str, message: str) -> NoReturn:
        raise ConfigError(f"{self._source}: {self._key_path(key)}: {message}")

    def warn_key(self, key: str, message: str) -> None:
        self._warn(f"{self._source}: {self._key_path(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self._data and self._data[key] is not None

    def raw(self, key: str) -> Any:
        return self._data.get(key)

    def names(self) -> list[str]:
        return list(self._data)

    def allow(self, *known: str) -> None:
        """Warn about (and so ignore) every key not in ``known``."""
        for key in self._data:
            if key not in known:
                self.warn_key(key, "unknown key, ignored")

    def child(self, key: str) -> Reader:
        value = self._data.get(key)
        if value is None:
            return Reader(self._source, self._warn, {}, self._key_path(key))
        if not isinstance(value, dict):
            self.fail(key, f"expected an object, got {_kind(value)}")
        return Reader(self._source, self._warn, value, self._key_path(key))

    def items(self, key: str) -> list[Reader]:
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected an array, got {_kind(value)}")
        readers = []
        for i, item in enumerate(value):
            path = f"{self._key_path(key)}[{i}]"
            if not isinstance(item, dict):
                raise ConfigError(f"{self._source}: {path}: expected an object, got {_kind(item)}")
            readers.append(Reader(self._source, self._warn, item, path))
        return readers

    @overload
    def string(self, key: str, default: str) -> str: ...
    @overload
    def string(self, key: str, default: None) -> str | None: ...
    def string(self, key: str, default: str | None) -> str | None:
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_kind(value)}")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self._data.get(key)
        if value is None:
            return default
        if value not in choices:
            self.fail(key, f"expected one of {'|'.join(choices)}, got {_show(value)}")
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_show(value)}")
        return bool(value)

    @overload
    def integer(
        self, key: str, default: int, *, minimum: int | None = None, maximum: int | None = None
    ) -> int: ...
    @overload
    def integer(
        self, key: str, default: None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None: ...
    def integer(
        self,
        key: str,
        default: int | None,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
    ) -> int | None:
        value = self._data.get(key)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"expected an integer, got {_show(value)}")
        self._range(key, value, minimum, maximum)
        return int(value)

    @overload
    def number(self, key: str, default: float, *, minimum: float | None = None) -> float: ...
    @overload
    def number(self, key: str, default: None, *, minimum: float | None = None) -> float | None: ...
    def number(
        self, key: str, default: float | None, *, minimum: float | None = None
    ) -> float | None:
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
            self.fail(key, f"expected a number, got {_show(value)}")
        self._range(key, value, minimum, None)
        return float(value)

    def _range(self, key: str, value: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and value < minimum:
            self.fail(key, f"expected at least {minimum}, got {_show(value)}")
        if maximum is not None and value > maximum:
            self.fail(key, f"expected at most {maximum}, got {_show(value)}")

    def string_map(self, key: str) -> dict[str, str]:
        node = self.child(key)
        return {k: node.string(k, "") for k in node.names()}

    def string_list(self, key: str) -> list[str]:
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected an array of strings, got {_kind(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{key}[{i}]", f"expected a string, got {_kind(item)}")
        return list(value)
