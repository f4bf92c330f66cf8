"""``GET /v1/models`` and ``GET /v1/models/{id}``: the agents, as OpenAI model ids.

IDE clients call these to verify a connection. They are on when chat completions are enabled.
"""

from __future__ import annotations

from quart import Response

from gateway.errors import InvalidRequest
from gateway.http.common import error_response, json_response
from gateway.settings import AgentsSettings
from gateway.types import JSONObject


def model_ids(agents: AgentsSettings) -> list[str]:
    return ["openclaw", "openclaw/default", *(f"openclaw/{a.id}" for a in agents.agents)]


def _model(model_id: str) -> JSONObject:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "openclaw"}


class Models:
    def __init__(self, agents: AgentsSettings) -> None:
        self.agents = agents

    async def list(self) -> Response:
        return json_response(
            {"object": "list", "data": [_model(m) for m in model_ids(self.agents)]}
        )

    async def get(self, model_id: str) -> Response:
        if model_id not in model_ids(self.agents):
            error = InvalidRequest(
                f"The model '{model_id}' does not exist.",
                status=404,
                param="model",
                code="model_not_found",
            )
            return error_response(error)
        return json_response(_model(model_id))
