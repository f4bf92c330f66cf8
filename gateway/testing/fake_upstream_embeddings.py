"""The fake upstream's ``POST /v1/embeddings`` answer: deterministic vectors. Pure.

Each input (a string, or an array of token ids) gets a unit vector drawn from a generator seeded
by the input's JSON text, so the same input always gets the same vector and different inputs
different ones. ``dimensions`` (default ``DEFAULT_DIMENSIONS``) sets the length;
``encoding_format: "base64"`` sends each vector as little-endian float32 bytes in base64, as
OpenAI does. ``usage.prompt_tokens`` counts the words of string inputs and the ids of token
arrays.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_DIMENSIONS", "embedding_vector", "embeddings_response"]

DEFAULT_DIMENSIONS = 8


def embedding_vector(value: object, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """The unit vector of one input (the same input, the same vector)."""
    seed = hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).digest()
    generator = random.Random(seed)
    raw = [generator.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def embeddings_response(request: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI embeddings answer for ``request`` (``{"object": "list", data, model, usage}``)."""
    inputs = _inputs(request.get("input"))
    dimensions = request.get("dimensions")
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        dimensions = DEFAULT_DIMENSIONS
    as_base64 = request.get("encoding_format") == "base64"
    data = []
    tokens = 0
    for index, value in enumerate(inputs):
        vector = embedding_vector(value, dimensions)
        embedding: Any = vector
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens += len(value.split()) if isinstance(value, str) else len(value)
    return {
        "object": "list",
        "data": data,
        "model": str(request.get("model", "fake")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _inputs(value: object) -> list[Any]:
    """One entry per input: a string, or a list of token ids."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]  # one input given as token ids
    return list(value) if isinstance(value, list) else []
