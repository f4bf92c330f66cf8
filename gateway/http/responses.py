"""The OpenAI Responses API: ``POST /v1/responses`` (served on ASGI directly, like chat
completions: one agent run, the same lanes, providers, transcripts and cancellation) and the
stored responses, ``GET``/``DELETE /v1/responses/{id}`` and ``GET .../input_items`` (Quart).

A request's context: with ``previous_response_id``, the stored chain of that response (its
ancestors' input and output items, oldest first) and not the session's transcript; without it, a
stateful run's transcript, as for chat completions. ``item_reference`` items are resolved from
stored responses before anything reaches the model. With ``store`` (the default) the response is
committed before the client is told it is complete (``response.completed``, or the JSON answer);
a streamed response the client saw start is stored however it ended.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from typing import Any

import trio
from quart import Response, request

from gateway.agents.events import RunEvent
from gateway.agents.routing import SessionTarget
from gateway.agents.run import RunRequest
from gateway.agents.runtime import AgentRuntime
from gateway.errors import GatewayError, InvalidRequest
from gateway.http.body import read_json
from gateway.http.common import error_response, json_response, query_limit
from gateway.http.exchange import Exchange, header_list
from gateway.http.runs import drain, open_run, resolve_target
from gateway.http.streaming import NO_REPLY, SSE_HEADERS, SSEBody, first_event
from gateway.responses.items import has_user_input, new_id, to_messages
from gateway.responses.request import MISSING_USER, ResponsesRequest, parse_responses_request
from gateway.responses.stream import ResponseStream
from gateway.sessions.responses import ResponseStore, StoredResponse
from gateway.settings import HttpSettings
from gateway.types import JSONObject

logger = logging.getLogger("gateway.responses")

# How long storing a response may delay the end of an exchange that was cancelled.
_STORE_TIMEOUT = 10.0
# Stored responses are pruned this often (and at startup).
PRUNE_INTERVAL = 3600.0
MAX_LIMIT = 100


class ResponsesApi:
    """The routes of the Responses API, bound to their dependencies."""

    def __init__(self, http: HttpSettings, runtime: AgentRuntime, store: ResponseStore) -> None:
        self.http = http
        self.runtime = runtime
        self.store = store

    # POST /v1/responses

    async def __call__(self, exchange: Exchange, nursery: trio.Nursery) -> None:
        http = self.http
        # The parsed request is all that is kept of the body (not its JSON document).
        req = parse_responses_request(
            await read_json(exchange, http.responses.max_body_bytes, http.body_timeout_seconds)
        )
        nursery.start_soon(exchange.watch_disconnect, nursery.cancel_scope)
        target = resolve_target(self.runtime, exchange, req.model, req.user, "openresponses")
        context: list[Any] | None = None
        inherited_system: list[str] = []
        if req.previous_response_id is not None:
            chain = await self.store.chain(req.previous_response_id)
            if chain is None:
                raise GatewayError(
                    f"Previous response with id '{req.previous_response_id}' not found.",
                    status=404,
                    type_="invalid_request_error",
                    param="previous_response_id",
                )
            past = to_messages(
                item
                for stored in chain
                for item in (*stored.input_items, *stored.response["output"])
            )
            context = past.messages
            inherited_system = [past.system] if past.system else []
        items = await self._resolve_references(req.input)
        if not has_user_input(items):
            raise InvalidRequest(MISSING_USER, param="input")
        conversation = to_messages(items)
        system = [
            text for text in (req.instructions, *inherited_system, conversation.system) if text
        ]
        run = open_run(
            self.runtime,
            RunRequest(
                run_id=str(uuid.uuid4()),
                agent=target.agent,
                session=target.session,
                messages=conversation.messages,
                system="\n\n".join(system) or None,
                model=target.model,
                params=_params(req),
                send_timeout=http.send_timeout_seconds,
                stream=req.stream,
                context=context,
                channel=target.channel,
            ),
            exchange,
            nursery,
        )
        response = _Response(
            req, new_id("resp"), int(time.time()), target.agent.id, target.session, items
        )
        headers = target.headers()
        if req.stream:
            await self._stream(exchange, response, run.events, headers)
        else:
            await self._collect(exchange, response, run.events, headers)

    async def _resolve_references(self, items: list[JSONObject]) -> list[JSONObject]:
        wanted = [item["id"] for item in items if item["type"] == "item_reference"]
        if not wanted:
            return items
        found = await self.store.find_items(wanted)
        missing = [item_id for item_id in wanted if item_id not in found]
        if missing:
            raise InvalidRequest(f"Item with id '{missing[0]}' not found.", param="input")
        return [found[item["id"]] if item["type"] == "item_reference" else item for item in items]

    async def _stream(
        self,
        exchange: Exchange,
        response: _Response,
        receive: trio.MemoryReceiveChannel[RunEvent],
        headers: dict[str, str],
    ) -> None:
        try:
            first = await first_event(receive, self.http.heartbeat_seconds)
        except GatewayError as error:
            await exchange.respond_error(error, headers)
            return
        stream = ResponseStream(response.describe)
        store = response.request.store
        body = SSEBody(
            stream,
            receive,
            first=first,
            heartbeat=self.http.heartbeat_seconds,
            before_end=(lambda: self._store(response, stream)) if store else None,
        )
        await exchange.start(200, [*SSE_HEADERS, *header_list(headers)])
        try:
            await body.write_to(exchange)
        finally:
            if store and not stream.finished:
                # The client saw the response start (it has its id): keep what there is.
                stream.status = "cancelled"
                with trio.CancelScope(shield=True), trio.move_on_after(_STORE_TIMEOUT):
                    await self._store(response, stream)

    async def _collect(
        self,
        exchange: Exchange,
        response: _Response,
        receive: trio.MemoryReceiveChannel[RunEvent],
        headers: dict[str, str],
    ) -> None:
        stream = ResponseStream(response.describe, silent=True)
        await drain(receive, stream.feed)
        stream.tail()
        reply = stream.reply
        if reply.error is not None:
            await exchange.respond_error(reply.error, headers)
            return
        if not stream.finished:
            await exchange.respond_error(GatewayError(NO_REPLY), headers)
            return
        if response.request.store:
            await self._store(response, stream)
        await exchange.respond_json(stream.response(), headers=header_list(headers))

    async def _store(self, response: _Response, stream: ResponseStream) -> None:
        stored = StoredResponse(
            id=response.id,
            created_at=response.created_at,
            agent_id=response.agent_id,
            session_key=response.session_key,
            previous_response_id=response.request.previous_response_id,
            response=stream.response(),
            input_items=response.items,
        )
        expires = int(time.time() + self.http.responses.retention_days * 86400)
        try:
            await self.store.put(stored, expires)
        except Exception:
            logger.exception("response %s: could not be stored", response.id)
            raise

    # GET / DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items (Quart)

    async def retrieve(self, response_id: str) -> Response:
        if request.method == "DELETE":
            if not await self.store.delete(response_id):
                return error_response(_not_found(response_id))
            return json_response({"id": response_id, "object": "response", "deleted": True})
        stored = await self.store.get(response_id)
        if stored is None:
            return error_response(_not_found(response_id))
        return json_response(stored.response)

    async def input_items(self, response_id: str) -> Response:
        try:
            limit = query_limit(request.args.get("limit"), default=20, maximum=MAX_LIMIT)
            order = request.args.get("order") or "desc"
            if order not in ("asc", "desc"):
                raise InvalidRequest("`order` must be asc or desc.", param="order")
            after = request.args.get("after") or None
            try:
                page = await self.store.input_items(
                    response_id, limit, after, "asc" if order == "asc" else "desc"
                )
            except ValueError:
                raise InvalidRequest(
                    f"No input item '{after}' in this response.", param="after"
                ) from None
        except GatewayError as error:
            return error_response(error)
        if page is None:
            return error_response(_not_found(response_id))
        data = list(page.items)
        return json_response(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": page.has_more,
            }
        )

    async def serve_pruning(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Delete expired stored responses now and every ``PRUNE_INTERVAL``, until cancelled."""
        task_status.started()
        while True:
            with contextlib.suppress(Exception):
                pruned = await self.store.prune(int(time.time()))
                if pruned:
                    logger.info("pruned %d expired stored response(s)", pruned)
            await trio.sleep(PRUNE_INTERVAL)


class _Response:
    """One response being made: its request, id, where it runs, and how it describes itself."""

    __slots__ = ("agent_id", "created_at", "id", "items", "request", "session_key")

    def __init__(
        self,
        request: ResponsesRequest,
        response_id: str,
        created_at: int,
        agent_id: str,
        session: SessionTarget,
        items: list[JSONObject],
    ) -> None:
        self.request = request
        self.id = response_id
        self.created_at = created_at
        self.agent_id = agent_id
        self.session_key: str | None = session.key if session.stateful else None
        self.items = items

    def describe(
        self,
        *,
        status: str,
        output: list[JSONObject],
        usage: JSONObject | None,
        error: JSONObject | None,
        incomplete: str | None,
    ) -> JSONObject:
        req = self.request
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "instructions": req.instructions,
            "max_output_tokens": req.max_output_tokens,
            "model": req.model,
            "output": list(output),
            "parallel_tool_calls": req.parallel_tool_calls,
            "previous_response_id": req.previous_response_id,
            "reasoning": {"effort": req.reasoning_effort, "summary": None},
            "store": req.store,
            "temperature": req.temperature,
            "text": {"format": req.text_format or {"type": "text"}},
            "tool_choice": req.tool_choice,
            "tools": req.tools,
            "top_p": req.top_p,
            "truncation": "disabled",
            "usage": usage,
            "user": req.user,
            "metadata": req.metadata,
        }


def _params(req: ResponsesRequest) -> dict[str, Any]:
    """The request's model settings in the chat shape every provider reads."""
    params: dict[str, Any] = {}
    if req.temperature is not None:
        params["temperature"] = req.temperature
    if req.top_p is not None:
        params["top_p"] = req.top_p
    if req.max_output_tokens is not None:
        params["max_completion_tokens"] = req.max_output_tokens
    if req.function_tools:
        params["tools"] = [
            {
                "type": "function",
                "function": {k: v for k, v in tool.items() if k != "type"},
            }
            for tool in req.function_tools
        ]
        choice = req.tool_choice
        if isinstance(choice, dict):
            params["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            params["tool_choice"] = choice
        params["parallel_tool_calls"] = req.parallel_tool_calls
    fmt = req.text_format
    if fmt is not None and fmt["type"] == "json_object":
        params["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    if req.reasoning_effort is not None:
        params["reasoning_effort"] = req.reasoning_effort
    return params


def _not_found(response_id: str) -> GatewayError:
    return GatewayError(
        f"Response with id '{response_id}' not found.",
        status=404,
        type_="invalid_request_error",
        code="response_not_found",
    )
