"""Validating embeddings request bodies (``gateway.http.embeddings_request``)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidRequest
from gateway.http.embeddings_request import MAX_INPUTS, parse_embeddings_request


def test_shapes() -> None:
    assert parse_embeddings_request({"input": "hi"}).inputs == ["hi"]
    assert parse_embeddings_request({"input": ["a", "b"]}).inputs == ["a", "b"]
    assert parse_embeddings_request({"input": [1, 2, 3]}).inputs == [[1, 2, 3]]
    assert parse_embeddings_request({"input": [[1], [2, 3]]}).inputs == [[1], [2, 3]]
    request = parse_embeddings_request(
        {"model": "openclaw/main", "input": "x", "encoding_format": "base64", "dimensions": 4}
    )
    assert request.model == "openclaw/main"
    assert request.params == {"encoding_format": "base64", "dimensions": 4}
    assert parse_embeddings_request({"input": "x"}).model == "openclaw"
    assert len(parse_embeddings_request({"input": ["x"] * MAX_INPUTS}).inputs) == MAX_INPUTS


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ([], None, "The request body must be a JSON object."),
        ({}, "input", "`input` must be a non-empty string"),
        ({"input": ""}, "input", "`input` must not be an empty string."),
        ({"input": []}, "input", "`input` must be a non-empty string"),
        ({"input": ["a", ""]}, "input", "`input[1]` must not be an empty string."),
        ({"input": [[1], []]}, "input", "`input[1]` must be a non-empty array of token ids."),
        ({"input": [[1], ["a"]]}, "input", "`input[1]` must be a non-empty array"),
        ({"input": ["a", 1]}, "input", "`input` must be a non-empty string"),
        ({"input": [1, -1]}, "input", "`input` must be a non-empty string"),
        ({"input": [True]}, "input", "`input` must be a non-empty string"),
        ({"input": 5}, "input", "`input` must be a non-empty string"),
        ({"input": ["x"] * (MAX_INPUTS + 1)}, "input", "`input` may hold at most 2048 inputs"),
        ({"input": "x", "model": 3}, "model", "`model` must be a string."),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format", "`encoding_format`"),
        ({"input": "x", "dimensions": 0}, "dimensions", "`dimensions` must be a positive"),
        ({"input": "x", "dimensions": 1.5}, "dimensions", "`dimensions` must be a positive"),
        ({"input": "x", "user": 1}, "user", "`user` must be a string."),
    ],
)
def test_invalid(body: Any, param: str | None, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_embeddings_request(body)
    assert caught.value.message.startswith(message)
    assert caught.value.param == param
