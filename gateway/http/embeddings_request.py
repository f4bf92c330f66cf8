"""Validating an embeddings request body. Pure: a parsed JSON document in, an
``EmbeddingsRequest`` or an ``InvalidRequest`` (400, OpenAI body, naming the field) out.

``input``: a string, an array of strings, an array of token ids (one input) or an array of such
arrays; never empty, no empty string or token array, at most ``MAX_INPUTS`` inputs. ``model``: an
agent target as for chat completions (missing: ``openclaw``). ``encoding_format`` (``float`` or
``base64``) and ``dimensions`` (a positive integer) are passed to the provider; ``user`` is
accepted and not forwarded; other fields are ignored, as OpenAI's own API ignores unknown ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.http.chat_request import is_int, request_model

MAX_INPUTS = 2048
ENCODING_FORMATS = ("float", "base64")
_INPUT_SHAPE = (
    "`input` must be a non-empty string, an array of non-empty strings, or an array of token "
    "ids (or of such arrays)."
)


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    model: str
    inputs: list[str] | list[list[int]]
    params: Mapping[str, Any] = field(default_factory=dict)


def parse_embeddings_request(raw: Any) -> EmbeddingsRequest:
    """Validate ``raw`` (already JSON-decoded). Raises ``InvalidRequest``."""
    body, model = request_model(raw)
    inputs = _inputs(body.get("input"))
    if len(inputs) > MAX_INPUTS:
        raise InvalidRequest(
            f"`input` may hold at most {MAX_INPUTS} inputs, got {len(inputs)}.", param="input"
        )
    params: dict[str, Any] = {}
    encoding = body.get("encoding_format")
    if encoding is not None:
        if encoding not in ENCODING_FORMATS:
            raise InvalidRequest(
                "`encoding_format` must be `float` or `base64`.", param="encoding_format"
            )
        params["encoding_format"] = encoding
    dimensions = body.get("dimensions")
    if dimensions is not None:
        if not is_int(dimensions) or dimensions < 1:
            raise InvalidRequest("`dimensions` must be a positive integer.", param="dimensions")
        params["dimensions"] = dimensions
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("`user` must be a string.", param="user")
    return EmbeddingsRequest(model, inputs, params)


def _inputs(raw: Any) -> list[str] | list[list[int]]:
    if isinstance(raw, str):
        if not raw:
            raise InvalidRequest("`input` must not be an empty string.", param="input")
        return [raw]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest(_INPUT_SHAPE, param="input")
    if all(isinstance(item, str) for item in raw):
        for i, item in enumerate(raw):
            if not item:
                raise InvalidRequest(f"`input[{i}]` must not be an empty string.", param="input")
        return list(raw)
    if all(_token(item) for item in raw):
        return [list(raw)]
    if all(isinstance(item, list) for item in raw):
        for i, item in enumerate(raw):
            if not item or not all(_token(token) for token in item):
                raise InvalidRequest(
                    f"`input[{i}]` must be a non-empty array of token ids.", param="input"
                )
        return [list(item) for item in raw]
    raise InvalidRequest(_INPUT_SHAPE, param="input")


def _token(value: Any) -> bool:
    return is_int(value) and value >= 0
