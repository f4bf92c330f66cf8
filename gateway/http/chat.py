"""``POST /v1/chat/completions``: the OpenAI-compatible entry to agent runs.

After the shared checks (``gateway.http.guard``: enabled, method, auth): the body size (413 from
Content-Length before reading), JSON (400), the content (400 naming the field), the agent and
the session key. Then the run starts in the request's nursery and the response waits for its
first event (or the heartbeat interval), so a failure before any output is a real HTTP status
with a JSON body.
"""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import quote

import trio
from quart import Request, Response, request

from gateway.agents.events import RunEvent, RunFailed, Usage
from gateway.agents.reply import Reply
from gateway.agents.routing import resolve_agent, resolve_session
from gateway.agents.run import RunRequest
from gateway.agents.runtime import AgentRuntime
from gateway.asgi import request_log, request_nursery
from gateway.errors import GatewayError, InvalidRequest
from gateway.http.chat_request import ChatRequest, parse_chat_request
from gateway.http.common import error_response, json_response
from gateway.http.streaming import SSEBody
from gateway.settings import HttpSettings
from gateway.sse import ChunkEncoder
from gateway.text import SURROGATE_ESCAPE_BYTES, has_lone_surrogate

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class ChatCompletions:
    """The route handler, bound to its dependencies."""

    def __init__(self, http: HttpSettings, runtime: AgentRuntime) -> None:
        self.http = http
        self.runtime = runtime

    async def handle(self) -> Response:
        try:
            chat = parse_chat_request(await _read_json(request, self.http))
            agent = resolve_agent(
                self.runtime.agents,
                request.headers.get("x-openclaw-agent-id")
                or request.headers.get("x-openclaw-agent"),
                chat.model,
            )
            session = resolve_session(
                agent.id, request.headers.get("x-openclaw-session-key"), chat.user
            )
        except GatewayError as error:
            return error_response(error)
        run = self.runtime.open_run(
            RunRequest(
                run_id=str(uuid.uuid4()),
                agent=agent,
                session=session,
                messages=chat.messages,
                system=chat.system,
                params=chat.params,
                send_timeout=self.http.send_timeout_seconds,
                stream=chat.stream,
            ),
            request_nursery(request.scope),
        )
        log = request_log(request.scope)
        if log is not None:
            log.run = run
        headers = {"x-openclaw-session-key": header_value(session.key)}
        if chat.stream:
            return await self._stream(chat, run.events, headers)
        return await self._collect(chat, run.events, headers)

    async def _stream(
        self,
        chat: ChatRequest,
        receive: trio.MemoryReceiveChannel[RunEvent],
        headers: dict[str, str],
    ) -> Response:
        first: RunEvent | None = None
        with trio.move_on_after(self.http.heartbeat_seconds):
            try:
                first = await receive.receive()
            except trio.EndOfChannel:
                return error_response(GatewayError("The run ended without a reply."), headers)
        if isinstance(first, RunFailed):
            return error_response(first.error, headers)
        encoder = ChunkEncoder(_completion_id(), int(time.time()), chat.model)
        body = SSEBody(
            encoder,
            receive,
            first=first,
            include_usage=chat.include_usage,
            heartbeat=self.http.heartbeat_seconds,
        )
        response = Response(body, status=200, headers={**SSE_HEADERS, **headers})
        response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut long streams
        return response

    async def _collect(
        self,
        chat: ChatRequest,
        receive: trio.MemoryReceiveChannel[RunEvent],
        headers: dict[str, str],
    ) -> Response:
        reply = Reply()
        async with receive:
            async for event in receive:
                reply.add(event)
        if reply.error is not None:
            return error_response(reply.error, headers)
        if reply.finish_reason is None:
            return error_response(GatewayError("The run ended without a reply."), headers)
        body = {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": chat.model,
            "choices": [
                {"index": 0, "message": reply.message(), "finish_reason": reply.finish_reason}
            ],
            "usage": (reply.usage or Usage(0, 0)).as_dict(),
        }
        return json_response(body, headers=headers)


def _completion_id() -> str:
    return f"chatcmpl_{uuid.uuid4()}"


async def _read_json(req: Request, http: HttpSettings) -> object:
    limit = http.chat_completions.max_body_bytes
    if req.content_length is not None and req.content_length > limit:
        raise GatewayError(
            f"Request body too large: {req.content_length} bytes (limit {limit}).",
            status=413,
            type_="invalid_request_error",
        )
    req.max_content_length = limit
    req.body_timeout = int(http.body_timeout_seconds) or 1
    data = await req.get_data(cache=False, as_text=False, parse_form_data=False)
    try:
        document = json.loads(data)
    except RecursionError:
        raise InvalidRequest("Invalid JSON body: nested too deeply.") from None
    except ValueError as exc:  # bad JSON, bad UTF-8, an integer of more than 4300 digits
        raise InvalidRequest(f"Invalid JSON body: {exc}") from None
    # A lone surrogate (``"\\ud800"``) decodes to a string no UTF-8 encoder accepts: the
    # response, the transcript and the upstream request would all fail on it later.
    if SURROGATE_ESCAPE_BYTES.search(data) and has_lone_surrogate(document):
        raise InvalidRequest("Invalid JSON body: a string contains an unpaired surrogate.")
    return document


# Printable ASCII but ``%`` and space: what a header value keeps of a key that needs escaping.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def header_value(text: str) -> str:
    """``text`` as an HTTP header value: as is when it is printable ASCII without edge spaces,
    else percent-encoded UTF-8 (a key from ``user`` may hold any character; a raw one would
    make the response itself fail)."""
    if text.isascii() and text.isprintable() and text == text.strip():
        return text
    return quote(text, safe=_HEADER_SAFE, errors="backslashreplace")
