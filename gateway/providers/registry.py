"""Building providers from settings and resolving ``provider/model`` references."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import trio

from gateway.providers.anthropic_messages import AnthropicMessagesProvider
from gateway.providers.base import Provider
from gateway.providers.echo import EchoProvider
from gateway.providers.google_generative_ai import GoogleGenerativeAIProvider
from gateway.providers.ollama import OllamaProvider
from gateway.providers.openai_completions import OpenAICompletionsProvider
from gateway.providers.openai_responses import OpenAIResponsesProvider
from gateway.settings import ModelSettings, ProviderSettings


def build_provider(settings: ProviderSettings) -> Provider:
    """One provider (with its own connection pool) for one ``models.providers`` entry."""
    if settings.api == "echo":
        return EchoProvider(settings.id)
    if settings.api == "openai-completions":
        return OpenAICompletionsProvider(settings)
    if settings.api == "openai-responses":
        return OpenAIResponsesProvider(settings)
    if settings.api == "anthropic-messages":
        return AnthropicMessagesProvider(settings)
    if settings.api == "google-generative-ai":
        return GoogleGenerativeAIProvider(settings)
    if settings.api == "ollama":
        return OllamaProvider(settings)
    raise ValueError(f"unsupported provider api {settings.api!r}")


class ProviderRegistry:
    """The providers of one app, by id. Owns their connection pools.

    ``catalog``: every provider's id and the models it declares (none: any model id), for the
    requests that name a model (``gateway.agents.models``)."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        models: Mapping[str, Sequence[ModelSettings]] | None = None,
    ) -> None:
        self._providers = dict(providers)
        declared = models or {}
        self.catalog: Mapping[str, Sequence[ModelSettings]] = {
            pid: tuple(declared.get(pid, ())) for pid in self._providers
        }
        self._users = 0
        self._unused = trio.Event()
        self._unused.set()

    def acquire(self) -> None:
        """A run starts using these providers (a reload must not close them under it)."""
        if self._users == 0:
            self._unused = trio.Event()
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            self._unused.set()

    async def aclose_when_unused(self) -> None:
        """Close the pools once no run uses them (after a reload replaced this registry)."""
        await self._unused.wait()
        await self.aclose()

    @classmethod
    def from_settings(cls, settings: Mapping[str, ProviderSettings]) -> ProviderRegistry:
        return cls(
            {pid: build_provider(p) for pid, p in settings.items()},
            {pid: p.models for pid, p in settings.items()},
        )

    def resolve(self, ref: str) -> tuple[Provider, str]:
        """``"provider/model"`` → (provider, model id at that provider). Raises ``KeyError``."""
        provider_id, _, model = ref.partition("/")
        return self._providers[provider_id], model

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
