"""JSON Schemas rewritten into the OpenAPI subset Gemini accepts. Pure.

Gemini's ``Schema`` (function ``parameters``, ``responseSchema``) rejects a request with any key it
does not know, and OpenAI-style tools routinely carry some. ``gemini_schema`` keeps, recursively
(through ``properties``, ``items`` and ``anyOf``), only the keys Gemini documents: ``type``,
``format``, ``title``, ``description``, ``nullable``, ``enum``, ``properties``, ``required``,
``items``, ``anyOf``, ``propertyOrdering``, ``minItems``, ``maxItems``, ``minProperties``,
``maxProperties``, ``minLength``, ``maxLength``, ``pattern``, ``minimum``, ``maximum``, ``default``,
``example``. Everything else is dropped, notably ``additionalProperties``, ``$schema``, ``$id``,
``$defs`` / ``definitions``, ``strict``, ``const`` (rewritten as a one-value ``enum``),
``examples``, ``oneOf`` / ``allOf`` / ``not``, ``patternProperties``, ``exclusiveMinimum`` /
``exclusiveMaximum`` and ``multipleOf``. A local ``$ref`` (``#/$defs/<name>`` or
``#/definitions/<name>``, as pydantic writes them) is replaced by the definition it names, up to
``MAX_REF_DEPTH`` levels deep (a recursive type is cut there, as a bare ``object``); any other
``$ref`` leaves an empty schema.

Also rewritten: a ``type`` list (``["string", "null"]`` → ``type: "string", nullable: true``;
several non-null types → ``anyOf``), a ``format`` Gemini does not support for the type (it
accepts ``enum`` / ``date-time`` for strings, ``int32`` / ``int64`` for integers, ``float`` /
``double`` for numbers) is dropped, and an empty ``properties`` object is dropped (Gemini refuses
an empty one).
"""

from __future__ import annotations

from typing import Any

from gateway.types import JSONObject

__all__ = ["MAX_REF_DEPTH", "gemini_schema"]

MAX_REF_DEPTH = 8

_KEPT = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "properties",
        "required", "items", "anyOf", "propertyOrdering", "minItems", "maxItems",
        "minProperties", "maxProperties", "minLength", "maxLength", "pattern", "minimum",
        "maximum", "default", "example",
    }
)  # fmt: skip
_FORMATS = {
    "string": {"enum", "date-time"},
    "integer": {"int32", "int64"},
    "number": {"float", "double"},
}


def gemini_schema(schema: Any) -> Any:
    """``schema`` with only what Gemini accepts (see the module docstring); a non-object is
    returned as it is."""
    if not isinstance(schema, dict):
        return schema
    definitions: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            definitions.update(schema[key])
    return _clean(schema, definitions, 0)


def _clean(schema: Any, definitions: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict):
        return schema
    reference = schema.get("$ref")
    if isinstance(reference, str):
        name = reference.removeprefix("#/$defs/").removeprefix("#/definitions/")
        if depth >= MAX_REF_DEPTH:
            return {"type": "object"}
        if name != reference and isinstance(definitions.get(name), dict):
            return _clean({**definitions[name], **_without(schema, "$ref")}, definitions, depth + 1)
    result: JSONObject = {key: value for key, value in schema.items() if key in _KEPT}
    if "const" in schema and "enum" not in result:
        result["enum"] = [schema["const"]]
    kinds = schema.get("type")
    if isinstance(kinds, list):
        del result["type"]
        concrete = [kind for kind in kinds if kind != "null"]
        if len(concrete) < len(kinds):
            result["nullable"] = True
        if len(concrete) == 1:
            result["type"] = concrete[0]
        elif concrete:
            result["anyOf"] = [{"type": kind} for kind in concrete]
    if result.get("format") not in _FORMATS.get(str(result.get("type")), ()):
        result.pop("format", None)
    properties = result.get("properties")
    if isinstance(properties, dict) and properties:
        result["properties"] = {
            name: _clean(sub, definitions, depth) for name, sub in properties.items()
        }
    else:
        result.pop("properties", None)
    if "items" in result:
        result["items"] = _clean(result["items"], definitions, depth)
    if isinstance(result.get("anyOf"), list):
        result["anyOf"] = [_clean(sub, definitions, depth) for sub in result["anyOf"]]
    return result


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}
