from __future__ import annotations

from gateway.providers.gemini_schema import MAX_REF_DEPTH, gemini_schema


def test_unknown_keys_are_dropped_recursively() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "x",
        "type": "object",
        "title": "Args",
        "additionalProperties": False,
        "strict": True,
        "properties": {
            "city": {"type": "string", "description": "City", "examples": ["Oslo"]},
            "tags": {
                "type": "array",
                "items": {"type": "string", "additionalProperties": False, "minLength": 1},
                "minItems": 1,
                "uniqueItems": True,
            },
            "when": {"type": "string", "format": "date-time"},
            "site": {"type": "string", "format": "uri"},
            "count": {"type": "integer", "format": "int32", "exclusiveMinimum": 0, "maximum": 9},
            "ratio": {"type": "number", "format": "percent", "multipleOf": 0.5},
            "unit": {"const": "celsius"},
            "choice": {"anyOf": [{"type": "string", "pattern": "^a"}, {"$ref": "#/$defs/x"}]},
        },
        "required": ["city"],
        "$defs": {"x": {"type": "string"}},
    }
    assert gemini_schema(schema) == {
        "type": "object",
        "title": "Args",
        "properties": {
            "city": {"type": "string", "description": "City"},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            "when": {"type": "string", "format": "date-time"},
            "site": {"type": "string"},
            "count": {"type": "integer", "format": "int32", "maximum": 9},
            "ratio": {"type": "number"},
            "unit": {"enum": ["celsius"]},
            "choice": {"anyOf": [{"type": "string", "pattern": "^a"}, {"type": "string"}]},
        },
        "required": ["city"],
    }


def test_type_lists() -> None:
    assert gemini_schema({"type": ["string", "null"]}) == {"type": "string", "nullable": True}
    assert gemini_schema({"type": ["string", "integer"]}) == {
        "anyOf": [{"type": "string"}, {"type": "integer"}]
    }
    assert gemini_schema({"type": ["null"]}) == {"nullable": True}


def test_empty_properties_are_dropped() -> None:
    assert gemini_schema({"type": "object", "properties": {}}) == {"type": "object"}
    nested = {"type": "object", "properties": {"o": {"type": "object", "properties": {}}}}
    assert gemini_schema(nested) == {"type": "object", "properties": {"o": {"type": "object"}}}


def test_enum_kept_over_const_and_non_objects_pass() -> None:
    assert gemini_schema({"type": "string", "enum": ["a"], "const": "b"}) == {
        "type": "string",
        "enum": ["a"],
    }
    assert gemini_schema(None) is None
    assert gemini_schema(True) is True


def test_local_references_are_inlined() -> None:
    schema = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "Where"},
            "work": {"$ref": "#/definitions/Address"},
            "elsewhere": {"$ref": "https://example.com/address.json"},
            "missing": {"$ref": "#/$defs/Nope"},
        },
        "$defs": {
            "Address": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"city": {"type": "string"}},
            }
        },
    }
    address = {"type": "object", "properties": {"city": {"type": "string"}}}
    assert gemini_schema(schema) == {
        "type": "object",
        "properties": {
            "home": {**address, "description": "Where"},
            "work": address,
            "elsewhere": {},
            "missing": {},
        },
    }


def test_recursive_references_are_cut() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/Node"}, "v": {"type": "integer"}},
            }
        },
    }
    cleaned = gemini_schema(schema)
    depth = 0
    while "properties" in cleaned:
        assert cleaned["properties"]["v"] == {"type": "integer"}
        cleaned = cleaned["properties"]["next"]
        depth += 1
    assert cleaned == {"type": "object"}
    assert depth == MAX_REF_DEPTH
