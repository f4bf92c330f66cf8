"""Which model ``x-openclaw-model`` names, and which model embeds (``gateway.agents.models``)."""

from __future__ import annotations

import pytest

from gateway.agents.models import INVALID_MODEL_HEADER, Catalog, chat_model, embedding_model
from gateway.errors import InvalidRequest
from gateway.settings import ModelChoice, ModelSettings

CATALOG: Catalog = {
    "echo": (ModelSettings("echo"),),
    "openai": (
        ModelSettings("gpt-4o"),
        ModelSettings("text-embedding-3-small", embedding=True),
        ModelSettings("text-embedding-3-large", embedding=True),
    ),
    "vllm": (ModelSettings("gpt-4o"), ModelSettings("llama")),
    "openrouter": (),  # declares nothing: any model id
    "anthropic": (ModelSettings("claude"),),
}


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("openai/gpt-4o", "openai/gpt-4o"),
        (" vllm/llama ", "vllm/llama"),
        ("llama", "vllm/llama"),
        ("claude", "anthropic/claude"),
        ("echo", "echo/echo"),
        ("openrouter/anthropic/claude-3.5", "openrouter/anthropic/claude-3.5"),
        ("openrouter/anything", "openrouter/anything"),
    ],
)
def test_chat_model(ref: str, expected: str) -> None:
    assert chat_model(ref, CATALOG) == ModelChoice(expected)


def test_no_header_is_the_agents_model() -> None:
    assert chat_model(None, CATALOG) is None


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "  ",
        "gpt-4o",  # two providers declare it
        "openai/gpt-5",  # not declared by openai
        "ghost/gpt-4o",  # no such provider, and no bare id "ghost/gpt-4o"
        "nothing",
        "openai/text-embedding-3-small",  # an embedding model is no chat model
        "text-embedding-3-small",
        "openai/",
        "x" * 600,
    ],
)
def test_invalid_chat_model(ref: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat_model(ref, CATALOG)
    assert caught.value.message == INVALID_MODEL_HEADER
    assert caught.value.param == "x-openclaw-model"


def test_embedding_model_from_the_header() -> None:
    assert embedding_model("openai/text-embedding-3-large", "vllm/llama", CATALOG) == (
        "openai/text-embedding-3-large"
    )
    assert embedding_model("text-embedding-3-large", "vllm/llama", CATALOG) == (
        "openai/text-embedding-3-large"
    )
    # A declared model need not be marked to be named explicitly.
    assert embedding_model("vllm/llama", "vllm/llama", CATALOG) == "vllm/llama"
    assert embedding_model("openrouter/e5", "vllm/llama", CATALOG) == "openrouter/e5"
    with pytest.raises(InvalidRequest, match="x-openclaw-model"):
        embedding_model("llama", "vllm/llama", CATALOG)  # bare ids: marked models only


def test_embedding_model_of_the_agents_provider() -> None:
    assert embedding_model(None, "openai/gpt-4o", CATALOG) == "openai/text-embedding-3-small"
    with pytest.raises(InvalidRequest) as caught:
        embedding_model(None, "vllm/llama", CATALOG)
    assert caught.value.message.startswith("Provider 'vllm' has no embedding model")
    assert caught.value.param == "model"
