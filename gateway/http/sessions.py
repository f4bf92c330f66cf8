"""Session endpoints: ``GET /sessions/<key>/history`` and ``POST /sessions/<key>/kill``."""

from __future__ import annotations

from quart import Response, request

from gateway.agents.runtime import AgentRuntime
from gateway.errors import GatewayError, InvalidRequest
from gateway.http.common import error_response, json_response
from gateway.sessions.base import TranscriptEntry
from gateway.types import JSONObject

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def entry_json(entry: TranscriptEntry) -> JSONObject:
    """A stored message as the history endpoints show it (an aborted reply says so)."""
    out: JSONObject = dict(entry.message)
    out["timestamp"] = entry.created_at_ms
    out["runId"] = entry.run_id
    out["status"] = entry.status
    if entry.status == "aborted":
        out["aborted"] = True
    if entry.usage is not None:
        out["usage"] = dict(entry.usage)
    return out


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"`limit` must be an integer from 1 to {MAX_LIMIT}.", param="limit")
    return limit


class Sessions:
    def __init__(self, runtime: AgentRuntime) -> None:
        self.runtime = runtime

    async def history(self, key: str) -> Response:
        try:
            limit = parse_limit(request.args.get("limit"))
            page = await self.runtime.transcripts.history(
                key, limit, request.args.get("cursor") or None
            )
        except ValueError:
            return error_response(InvalidRequest("Invalid `cursor`.", param="cursor"))
        except GatewayError as error:
            return error_response(error)
        if page is None:
            missing = GatewayError(
                f"Unknown session '{key}'.", status=404, type_="invalid_request_error",
                code="session_not_found",
            )  # fmt: skip
            return error_response(missing)
        return json_response(
            {
                "sessionKey": key,
                "messages": [entry_json(e) for e in page.entries],
                "nextCursor": page.next_cursor,
            }
        )

    async def kill(self, key: str) -> Response:
        return json_response({"ok": True, "killed": await self.runtime.kill_session(key)})
