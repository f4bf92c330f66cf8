"""``POST /v1/embeddings``, served on ASGI directly (``gateway.http.direct``), on with the chat
completions switch and behind the same checks.

The body (``gateway.http.embeddings_request``), then the agent (``x-openclaw-agent-id`` or
``model``, as for chat), then the embedding model (``gateway.agents.models.embedding_model``:
``x-openclaw-model``, else the agent's provider's first ``embedding: true`` model). The whole
input goes to the provider in one upstream request; the answer is OpenAI's shape with ``model``
echoing the request's. A client that disconnects cancels the request, which closes the upstream
request at once.
"""

from __future__ import annotations

import trio

from gateway.agents.models import embedding_model
from gateway.agents.routing import resolve_agent
from gateway.agents.runtime import AgentRuntime
from gateway.errors import InvalidRequest
from gateway.http.body import agent_header, read_json
from gateway.http.embeddings_request import parse_embeddings_request
from gateway.http.exchange import Exchange
from gateway.providers.base import supports_embeddings
from gateway.settings import HttpSettings
from gateway.types import JSONObject


class Embeddings:
    """The route handler, bound to its dependencies."""

    def __init__(self, http: HttpSettings, runtime: AgentRuntime) -> None:
        self.http = http
        self.runtime = runtime

    async def __call__(self, exchange: Exchange, nursery: trio.Nursery) -> None:
        http = self.http
        document = await read_json(
            exchange, http.chat_completions.max_body_bytes, http.body_timeout_seconds
        )
        nursery.start_soon(exchange.watch_disconnect, nursery.cancel_scope)
        request = parse_embeddings_request(document)
        runtime = self.runtime
        agent = resolve_agent(
            runtime.agents,
            agent_header(exchange),
            request.model,
        )
        providers = runtime.providers
        primary = runtime.agents.model_for(agent).primary
        ref = embedding_model(exchange.header(b"x-openclaw-model"), primary, providers.catalog)
        provider, model = providers.resolve(ref)
        if not supports_embeddings(provider):
            raise InvalidRequest(
                f"Provider '{provider.id}' has no embeddings API.", param="x-openclaw-model"
            )
        providers.acquire()  # a reload meanwhile must not close its connections under it
        try:
            result = await provider.embed(model, request.inputs, request.params)
        finally:
            providers.release()
        usage = dict(result.usage) if result.usage else {}
        prompt_tokens = usage.get("prompt_tokens", 0)
        body: JSONObject = {
            "object": "list",
            "data": [dict(item) for item in result.data],
            "model": request.model,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "total_tokens": usage.get("total_tokens", prompt_tokens),
            },
        }
        await exchange.respond_json(body)
