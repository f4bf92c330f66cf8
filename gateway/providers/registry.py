"""Building providers from settings and resolving ``provider/model`` references."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.providers.anthropic_messages import AnthropicMessagesProvider
from gateway.providers.base import Provider
from gateway.providers.echo import EchoProvider
from gateway.providers.openai_completions import OpenAICompletionsProvider
from gateway.settings import ProviderSettings


def build_provider(settings: ProviderSettings) -> Provider:
    """One provider (with its own connection pool) for one ``models.providers`` entry."""
    if settings.api == "echo":
        return EchoProvider(settings.id)
    if settings.api == "openai-completions":
        return OpenAICompletionsProvider(settings)
    if settings.api == "anthropic-messages":
        return AnthropicMessagesProvider(settings)
    raise ValueError(f"unsupported provider api {settings.api!r}")


class ProviderRegistry:
    """The providers of one app, by id. Owns their connection pools."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._providers = dict(providers)

    @classmethod
    def from_settings(cls, settings: Mapping[str, ProviderSettings]) -> ProviderRegistry:
        return cls({pid: build_provider(p) for pid, p in settings.items()})

    def resolve(self, ref: str) -> tuple[Provider, str]:
        """``"provider/model"`` → (provider, model id at that provider). Raises ``KeyError``."""
        provider_id, _, model = ref.partition("/")
        return self._providers[provider_id], model

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
