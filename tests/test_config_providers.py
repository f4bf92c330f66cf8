"""``models.providers``: the API kinds accepted and refused, ``models.mode``, embedding models."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.config import PROVIDER_APIS, ConfigError, parse_settings
from gateway.providers.registry import ProviderRegistry


def providers(entry: dict[str, Any], **models: Any) -> dict[str, Any]:
    return {"models": {"providers": {"up": {"baseUrl": "http://127.0.0.1:9", **entry}}, **models}}


def parse(data: Any) -> tuple[Any, list[str]]:
    warnings: list[str] = []
    return parse_settings(data, source="cfg.json5", environ={}, warn=warnings.append), warnings


@pytest.mark.parametrize("api", PROVIDER_APIS)
async def test_every_supported_kind_loads_and_builds(api: str) -> None:
    settings, warnings = parse(providers({"api": api}))
    assert (settings.providers["up"].api, warnings) == (api, [])
    registry = ProviderRegistry.from_settings(settings.providers)
    provider, model = registry.resolve("up/some-model")
    assert (provider.id, model) == ("up", "some-model")
    await registry.aclose()


@pytest.mark.parametrize(
    "api",
    [
        "openai-chatgpt-responses",
        "google-vertex",
        "github-copilot",
        "bedrock-converse-stream",
        "azure-openai-responses",
        "something-new",
        "echo",
    ],
)
def test_other_kinds_are_refused_naming_provider_kind_and_choices(api: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(providers({"api": api}))
    assert str(caught.value) == (
        f"cfg.json5: models.providers.up.api: provider 'up' uses the model API kind {api!r}, "
        "which this gateway does not support (supported: openai-completions, openai-responses, "
        "anthropic-messages, google-generative-ai, ollama)"
    )


def test_api_must_be_a_string() -> None:
    with pytest.raises(ConfigError, match=re.escape("models.providers.up.api: expected a string")):
        parse(providers({"api": 3}))


@pytest.mark.parametrize("mode", ["merge", "replace", None])
def test_models_mode_is_accepted_and_ignored(mode: str | None) -> None:
    settings, warnings = parse(providers({}, mode=mode))
    assert warnings == []
    assert set(settings.providers) == {"echo", "up"}


def test_models_mode_is_validated() -> None:
    message = 'models.mode: expected one of merge|replace, got "mix"'
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(providers({}, mode="mix"))


def test_embedding_models() -> None:
    entry = {
        "models": [
            {"id": "text-embedding-3-small", "embedding": True},
            {"id": "gpt-4o-mini", "reasoning": False, "input": ["text"]},
        ]
    }
    settings, warnings = parse(providers(entry))
    assert warnings == []
    first, second = settings.providers["up"].models
    assert (first.id, first.embedding) == ("text-embedding-3-small", True)
    assert (second.id, second.embedding) == ("gpt-4o-mini", False)
    with pytest.raises(ConfigError, match=r"models\[0\].embedding: expected true or false"):
        parse(providers({"models": [{"id": "e", "embedding": "yes"}]}))
