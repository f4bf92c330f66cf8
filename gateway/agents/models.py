"""Which model a request names in ``x-openclaw-model``, and which model embeds. Pure.

The catalogue is every provider's id and the models it declares (``models.providers.<id>.models``;
a provider that declares none accepts any model id).

A **chat model** (``/v1/chat/completions``, ``/v1/responses``, WebSocket ``model``) is named
``provider/model`` (the provider must exist; if it declares models, ``model`` must be one of them
and not an ``embedding: true`` one) or by a bare model id that exactly one provider declares
(embedding models left out). Model ids may hold ``/`` themselves (``openrouter/anthropic/x``:
provider ``openrouter``, model ``anthropic/x``); a reference whose first part names no provider
is read as a bare id. The choice has no fallbacks: an explicit model is that model.

An **embedding model** (``/v1/embeddings``): ``x-openclaw-model`` as above, except that a
provider's model need not be marked ``embedding: true`` and a bare id matches marked models
only; without the header, the first ``embedding: true`` model of the provider of the agent's
primary model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.errors import InvalidRequest
from gateway.settings import ModelChoice, ModelSettings

Catalog = Mapping[str, Sequence[ModelSettings]]

MODEL_HEADER = "x-openclaw-model"
INVALID_MODEL_HEADER = "Invalid `x-openclaw-model`."
_MAX_REF = 512


def chat_model(ref: str | None, catalog: Catalog) -> ModelChoice | None:
    """The model ``x-openclaw-model: ref`` names for a completion (``None`` without the header:
    the agent's). Raises ``InvalidRequest``."""
    if ref is None:
        return None
    return ModelChoice(_resolve(ref, catalog, embedding=False))


def embedding_model(ref: str | None, primary: str, catalog: Catalog) -> str:
    """The ``provider/model`` to embed with, from the header's ``ref`` or else the agent's
    ``primary`` model's provider. Raises ``InvalidRequest``."""
    if ref is not None:
        return _resolve(ref, catalog, embedding=True)
    provider_id = primary.partition("/")[0]
    for model in catalog.get(provider_id, ()):
        if model.embedding:
            return f"{provider_id}/{model.id}"
    raise InvalidRequest(
        f"Provider '{provider_id}' has no embedding model: mark one with `embedding: true` in "
        f"`models.providers.{provider_id}.models`, or name one in `x-openclaw-model`.",
        param="model",
    )


def _resolve(ref: str, catalog: Catalog, *, embedding: bool) -> str:
    ref = ref.strip()
    if not ref or len(ref) > _MAX_REF:
        raise _invalid()
    provider_id, _, model = ref.partition("/")
    if model and provider_id in catalog:
        declared = catalog[provider_id]
        if not declared:
            return ref
        for entry in declared:
            if entry.id == model and (embedding or not entry.embedding):
                return ref
        raise _invalid()
    owners = [
        pid
        for pid, declared in catalog.items()
        if any(m.id == ref and m.embedding == embedding for m in declared)
    ]
    if len(owners) != 1:
        raise _invalid()
    return f"{owners[0]}/{ref}"


def _invalid() -> InvalidRequest:
    return InvalidRequest(INVALID_MODEL_HEADER, param=MODEL_HEADER)
