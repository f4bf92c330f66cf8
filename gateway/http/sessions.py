"""Session endpoints: ``GET /sessions/<key>/history`` (JSON, or with ``Accept:
text/event-stream`` the live history, ``gateway.http.history_stream``) and ``POST
/sessions/<key>/kill``."""

from __future__ import annotations

from collections.abc import Callable

from quart import Response, request

from gateway.agents.runtime import AgentRuntime
from gateway.errors import GatewayError, InvalidRequest
from gateway.http.common import error_response, json_response, query_limit
from gateway.http.history_sse import (
    CONTENT_TYPE,
    RETRY,
    entry_json,
    history_event,
    wants_event_stream,
)
from gateway.http.history_stream import HistoryStream, HistoryStreams

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class Sessions:
    """The session routes; ``heartbeat`` reads ``gateway.http.heartbeatSeconds`` per stream
    (a reload changes it), ``streams`` the open live histories (a shutdown ends them)."""

    def __init__(
        self, runtime: AgentRuntime, heartbeat: Callable[[], float], streams: HistoryStreams
    ) -> None:
        self.runtime = runtime
        self.heartbeat = heartbeat
        self.streams = streams

    async def history(self, key: str) -> Response:
        try:
            limit = query_limit(request.args.get("limit"), default=DEFAULT_LIMIT, maximum=MAX_LIMIT)
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
        if request.method == "GET" and wants_event_stream(request.headers.get("Accept")):
            snapshot = history_event(key, page.entries, page.next_cursor is not None)
            body = HistoryStream(
                self.runtime.transcripts,
                key,
                RETRY + snapshot,
                page.end,
                self.heartbeat,
                self.streams,
            )
            response = Response(
                body,
                content_type=CONTENT_TYPE,
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
            response.timeout = None  # live: never cut by Quart's response timeout
            return response
        return json_response(
            {
                "sessionKey": key,
                "messages": [entry_json(e) for e in page.entries],
                "nextCursor": page.next_cursor,
            }
        )

    async def kill(self, key: str) -> Response:
        return json_response({"ok": True, "killed": await self.runtime.kill_session(key)})
