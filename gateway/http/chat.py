"""``POST /v1/chat/completions``: the OpenAI-compatible entry to agent runs, served on ASGI
directly (``gateway.http.direct``).

After the shared checks (enabled, method, auth): the body size (413 from Content-Length before
reading), JSON (400), the content (400 naming the field), the agent and the session key. Then
the run starts in the request's nursery and the response waits for its first event (or the
heartbeat interval), so a failure before any output is a real HTTP status with a JSON body.
"""

from __future__ import annotations

import time
import uuid

import trio

from gateway.agents.events import RunEvent, Usage
from gateway.agents.reply import Reply
from gateway.agents.run import RunRequest
from gateway.agents.runtime import AgentRuntime
from gateway.errors import GatewayError
from gateway.http.body import read_json
from gateway.http.chat_request import ChatRequest, parse_chat_request
from gateway.http.exchange import Exchange, header_list
from gateway.http.runs import drain, open_run, resolve_target
from gateway.http.streaming import NO_REPLY, SSE_HEADERS, SSEBody, first_event
from gateway.settings import HttpSettings
from gateway.sse import ChatStream, ChunkEncoder


class ChatCompletions:
    """The route handler, bound to its dependencies."""

    def __init__(self, http: HttpSettings, runtime: AgentRuntime) -> None:
        self.http = http
        self.runtime = runtime

    async def __call__(self, exchange: Exchange, nursery: trio.Nursery) -> None:
        http = self.http
        # The parsed request is all that is kept of the body (not its JSON document).
        chat = parse_chat_request(
            await read_json(
                exchange, http.chat_completions.max_body_bytes, http.body_timeout_seconds
            )
        )
        # From here on a client that leaves cancels the request nursery: the run stops.
        nursery.start_soon(exchange.watch_disconnect, nursery.cancel_scope)
        target = resolve_target(self.runtime, exchange, chat.model, chat.user, "openai")
        run = open_run(
            self.runtime,
            RunRequest(
                run_id=str(uuid.uuid4()),
                agent=target.agent,
                session=target.session,
                messages=chat.messages,
                system=chat.system,
                model=target.model,
                params=chat.params,
                send_timeout=http.send_timeout_seconds,
                stream=chat.stream,
                channel=target.channel,
            ),
            exchange,
            nursery,
        )
        headers = target.headers()
        if chat.stream:
            await self._stream(exchange, chat, run.events, headers)
        else:
            await self._collect(exchange, chat, run.events, headers)

    async def _stream(
        self,
        exchange: Exchange,
        chat: ChatRequest,
        receive: trio.MemoryReceiveChannel[RunEvent],
        headers: dict[str, str],
    ) -> None:
        try:
            first = await first_event(receive, self.http.heartbeat_seconds)
        except GatewayError as error:
            await exchange.respond_error(error, headers)
            return
        encoder = ChunkEncoder(_completion_id(), int(time.time()), chat.model)
        body = SSEBody(
            ChatStream(encoder, include_usage=chat.include_usage),
            receive,
            first=first,
            heartbeat=self.http.heartbeat_seconds,
        )
        await exchange.start(200, [*SSE_HEADERS, *header_list(headers)])
        await body.write_to(exchange)

    async def _collect(
        self,
        exchange: Exchange,
        chat: ChatRequest,
        receive: trio.MemoryReceiveChannel[RunEvent],
        headers: dict[str, str],
    ) -> None:
        reply = Reply()
        await drain(receive, reply.add)
        if reply.error is not None:
            await exchange.respond_error(reply.error, headers)
            return
        if reply.finish_reason is None:
            await exchange.respond_error(GatewayError(NO_REPLY), headers)
            return
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
        await exchange.respond_json(body, headers=header_list(headers))


def _completion_id() -> str:
    return f"chatcmpl_{uuid.uuid4()}"
