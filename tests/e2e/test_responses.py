"""``/v1/responses`` through the real server with the official ``openai`` SDK and raw HTTP: the
response object, the event stream, function tools and their continuation, stored responses and
``previous_response_id`` chains and branches, retrieval, and every error path."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from openai import AsyncOpenAI, NotFoundError, OpenAI

from gateway.providers.base import Emit, ModelRequest, ProviderError
from gateway.providers.events import Finish, TextDelta, ToolCallDelta, Usage
from tests.harness import AUTH, TOKEN, ScriptedProvider, start_server
from tests.memory_store import MemoryResponses, MemoryStore

CONFIG: dict[str, Any] = {
    "gateway": {"http": {"endpoints": {"responses": {"enabled": True}}}},
    "agents": {"defaults": {"model": "scripted/m"}},
}


def sse(text: str) -> list[tuple[str, dict[str, Any] | str]]:
    """(event, data) pairs of an event stream; ``[DONE]`` as the string it is."""
    out: list[tuple[str, dict[str, Any] | str]] = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        if lines[0].startswith(":"):
            continue
        if lines[0] == "data: [DONE]":
            out.append(("", "[DONE]"))
            continue
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


class Tools:
    """Asks for ``get_weather`` first; once it sees the tool's output, answers with text."""

    id = "scripted"

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        self.requests.append(request)
        if request.messages[-1]["role"] == "tool":
            await emit(TextDelta("It is sunny."))
            await emit(Usage(20, 4))
            await emit(Finish("stop"))
            return
        await emit(ToolCallDelta(0, "", id="call_w1", name="get_weather"))
        await emit(ToolCallDelta(0, '{"city":'))
        await emit(ToolCallDelta(0, '"Oslo"}'))
        await emit(Usage(10, 5))
        await emit(Finish("tool_calls"))

    async def aclose(self) -> None:
        return None


async def serve(
    nursery: trio.Nursery, provider: Any, config: dict[str, Any] | None = None, **kwargs: Any
) -> Any:
    return await start_server(
        nursery, {**CONFIG, **(config or {})}, providers={"scripted": provider}, **kwargs
    )


def client(server: Any) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0)


async def test_sdk_create_and_retrieve(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["Hello ", "there"])
    server = await serve(nursery, scripted)
    async with client(server) as sdk:
        response = await sdk.responses.create(
            model="openclaw", input="hi", instructions="Be brief.", metadata={"k": "v"}
        )
        assert response.status == "completed" and response.output_text == "Hello there"
        assert response.id.startswith("resp_") and response.model == "openclaw"
        assert response.metadata == {"k": "v"} and response.instructions == "Be brief."
        assert response.usage is not None and response.usage.output_tokens == 2
        assert response.usage.total_tokens == 9
        [message] = response.output
        assert message.type == "message" and message.id.startswith("msg_")
        again = await sdk.responses.retrieve(response.id)
        assert again.output_text == "Hello there" and again.id == response.id
        items = await sdk.responses.input_items.list(response.id)
        assert [i.type for i in items.data] == ["message"]
        assert items.data[0].content[0].text == "hi"  # type: ignore[union-attr]
        await sdk.responses.delete(response.id)
        with pytest.raises(NotFoundError):
            await sdk.responses.retrieve(response.id)
    request = scripted.calls[0].request
    assert request.system == "Be brief." and request.messages == [{"role": "user", "content": "hi"}]


async def test_stream_events_in_order(nursery: trio.Nursery) -> None:
    server = await serve(nursery, ScriptedProvider(words=["a ", "b"]))
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        answer = await http.post("/v1/responses", json={"input": "go", "stream": True})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse(answer.text)
    assert [kind for kind, _ in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
        "",
    ]
    data = [d for _, d in events[:-1]]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))  # type: ignore[index]
    assert all(d["type"] == kind for kind, d in events[:-1])  # type: ignore[index]
    created, completed = data[0]["response"], data[-1]["response"]  # type: ignore[index]
    assert created["id"] == completed["id"] and created["status"] == "in_progress"
    assert completed["status"] == "completed" and completed["usage"]["output_tokens"] == 2
    assert completed["output"][0]["content"][0]["text"] == "a b"
    assert data[4]["delta"] == "a " and data[4]["item_id"] == completed["output"][0]["id"]  # type: ignore[index]


async def test_sdk_stream(nursery: trio.Nursery) -> None:
    server = await serve(nursery, ScriptedProvider(words=["x ", "y"]))

    def consume() -> list[str]:
        # The sync client in a thread: the async one leaves its event generators to the GC
        # when it stops at [DONE], which trio reports.
        with OpenAI(base_url=server.url + "/v1", api_key=TOKEN, max_retries=0) as sdk:
            stream = sdk.responses.create(model="openclaw", input="go", stream=True)
            return [event.type for event in stream]

    kinds = await trio.to_thread.run_sync(consume)
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 2


async def test_function_tools_and_their_continuation(nursery: trio.Nursery) -> None:
    tools = Tools()
    server = await serve(nursery, tools)
    weather = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    async with client(server) as sdk:
        first = await sdk.responses.create(
            model="openclaw",
            input="Weather in Oslo?",
            tools=[weather, {"type": "web_search"}],  # type: ignore[list-item]
        )
        [call] = first.output
        assert call.type == "function_call" and call.name == "get_weather"
        assert call.call_id == "call_w1" and call.arguments == '{"city":"Oslo"}'
        assert call.id.startswith("fc_") and first.status == "completed"
        second = await sdk.responses.create(
            model="openclaw",
            previous_response_id=first.id,
            input=[{"type": "function_call_output", "call_id": "call_w1", "output": "sunny"}],
            tools=[weather],  # type: ignore[list-item]
        )
        assert second.output_text == "It is sunny."
    one, two = tools.requests
    # Only the function tool reaches the model, in the chat shape every provider reads.
    assert [t["function"]["name"] for t in one.params["tools"]] == ["get_weather"]
    assert two.messages == [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_w1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_w1", "content": "sunny"},
    ]


async def test_function_call_events(nursery: trio.Nursery) -> None:
    server = await serve(nursery, Tools())
    body = {"input": "weather?", "stream": True, "tools": [{"type": "function", "name": "w"}]}
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        events = sse((await http.post("/v1/responses", json=body)).text)
    kinds = [kind for kind, _ in events]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
        "",
    ]
    done = events[5][1]
    assert done["arguments"] == '{"city":"Oslo"}' and done["name"] == "get_weather"  # type: ignore[index]


async def test_previous_response_chains_and_branches(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["ok"])
    server = await serve(nursery, scripted)
    async with client(server) as sdk:
        root = await sdk.responses.create(model="openclaw", input="one", instructions="A")
        child = await sdk.responses.create(
            model="openclaw", input="two", previous_response_id=root.id
        )
        await sdk.responses.create(model="openclaw", input="three", previous_response_id=child.id)
        await sdk.responses.create(model="openclaw", input="branch", previous_response_id=root.id)
    user = [m["content"] for m in scripted.calls[2].request.messages if m["role"] == "user"]
    assert user == ["one", "two", "three"]
    branch = [(m["role"], m["content"]) for m in scripted.calls[3].request.messages]
    assert branch == [("user", "one"), ("assistant", "ok"), ("user", "branch")]
    # Instructions are not carried over from a previous response.
    assert scripted.calls[1].request.system is None


async def test_previous_response_not_found(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider()
    server = await serve(nursery, scripted)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        unstored = await http.post("/v1/responses", json={"input": "x", "store": False})
        assert unstored.status_code == 200
        gone = unstored.json()["id"]
        assert (await http.get(f"/v1/responses/{gone}")).status_code == 404
        for previous in (gone, "resp_nope"):
            answer = await http.post(
                "/v1/responses", json={"input": "y", "previous_response_id": previous}
            )
            assert answer.status_code == 404
            assert answer.json()["error"] == {
                "message": f"Previous response with id '{previous}' not found.",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": None,
            }
    assert len(scripted.calls) == 1  # nothing reached the upstream


async def test_item_references(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["fine"])
    server = await serve(nursery, scripted)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        first = (await http.post("/v1/responses", json={"input": "how?"})).json()
        reply_id = first["output"][0]["id"]
        body = {
            "input": [
                {"type": "item_reference", "id": reply_id},
                {"role": "user", "content": "and?"},
            ]
        }
        assert (await http.post("/v1/responses", json=body)).status_code == 200
        bad = {"input": [{"type": "item_reference", "id": "msg_unknown"}]}
        answer = await http.post("/v1/responses", json=bad)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "Item with id 'msg_unknown' not found."
    assert [m["role"] for m in scripted.calls[1].request.messages] == ["assistant", "user"]


async def test_input_items_pages(nursery: trio.Nursery) -> None:
    server = await serve(nursery, ScriptedProvider())
    inputs = [{"role": "user", "content": f"m{i}", "id": f"msg_{i}"} for i in range(5)]
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        response_id = (await http.post("/v1/responses", json={"input": inputs})).json()["id"]
        url = f"/v1/responses/{response_id}/input_items"
        page = (await http.get(url, params={"limit": 2})).json()
        assert [i["id"] for i in page["data"]] == ["msg_4", "msg_3"] and page["has_more"]
        assert (page["first_id"], page["last_id"]) == ("msg_4", "msg_3")
        rest = (await http.get(url, params={"limit": 10, "after": "msg_3"})).json()
        assert [i["id"] for i in rest["data"]] == ["msg_2", "msg_1", "msg_0"]
        assert not rest["has_more"]
        asc = (await http.get(url, params={"order": "asc", "limit": 1})).json()
        assert [i["id"] for i in asc["data"]] == ["msg_0"]
        assert (await http.get(url, params={"limit": 0})).status_code == 400
        assert (await http.get(url, params={"after": "nope"})).status_code == 400
        assert (await http.get("/v1/responses/resp_x/input_items")).status_code == 404
        assert (await http.delete("/v1/responses/resp_x")).status_code == 404
        deleted = await http.delete(f"/v1/responses/{response_id}")
        assert deleted.json() == {"id": response_id, "object": "response", "deleted": True}


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"input": ""}, "Missing user message in `input`.", "input"),
        ({"input": []}, "Missing user message in `input`.", "input"),
        (
            {"input": [{"role": "system", "content": "x"}]},
            "Missing user message in `input`.",
            "input",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": " "}]}]},
            "Missing user message in `input`.",
            "input",
        ),
        (
            {"input": "x", "background": True},
            "`background` responses are not supported.",
            "background",
        ),
        ({"input": 3}, "`input` must be a string or an array of input items.", "input"),
        (
            {"input": "x", "tools": [{"type": "function"}]},
            "`tools[0].name` must be a non-empty string.",
            "tools",
        ),
        (
            {"input": "x", "temperature": 3},
            "`temperature` must be a number between 0 and 2.",
            "temperature",
        ),
        (
            {"input": "x", "max_output_tokens": 0},
            "`max_output_tokens` must be a positive integer.",
            "max_output_tokens",
        ),
        (
            {"input": "x", "metadata": {str(i): "v" for i in range(17)}},
            "`metadata` has more than 16 keys.",
            "metadata",
        ),
        (
            {"input": "x", "model": "gpt-4o"},
            "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`.",
            "model",
        ),
        (
            {"input": "x", "text": {"format": {"type": "json_schema"}}},
            "`text.format.schema` must be an object.",
            "text",
        ),
        (
            {"input": [{"type": "computer_call"}]},
            "`input[0].type` 'computer_call' is not supported; use message, function_call, "
            "function_call_output, reasoning or item_reference.",
            "input",
        ),
    ],
)
async def test_bad_requests(
    nursery: trio.Nursery, body: dict[str, Any], message: str, param: str
) -> None:
    scripted = ScriptedProvider()
    server = await serve(nursery, scripted)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        answer = await http.post("/v1/responses", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": None,
    }
    assert scripted.calls == []


async def test_accepted_and_ignored_fields(nursery: trio.Nursery) -> None:
    scripted = ScriptedProvider(words=["k"])
    server = await serve(nursery, scripted)
    body = {
        "input": [{"type": "reasoning", "summary": []}, {"role": "user", "content": "q"}],
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "p",
        "reasoning": {"effort": "low", "summary": "auto"},
        "service_tier": "auto",
        "truncation": "auto",
        "max_tool_calls": 3,
        "background": False,
        "mystery": 1,
        "tools": [{"type": "namespace", "name": "x"}, {"type": "file_search"}],
        "text": {"format": {"type": "json_object"}},
        "max_output_tokens": 50,
    }
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        answer = await http.post("/v1/responses", json=body)
    assert answer.status_code == 200, answer.text
    params = scripted.calls[0].request.params
    assert params == {
        "max_completion_tokens": 50,
        "response_format": {"type": "json_object"},
        "reasoning_effort": "low",
    }
    assert scripted.calls[0].request.messages == [{"role": "user", "content": "q"}]


async def test_failure_before_output_is_a_status(nursery: trio.Nursery) -> None:
    failing = ScriptedProvider(fail=ProviderError("rate_limited", "slow down", retry_after=7))
    server = await serve(nursery, failing)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        for stream in (False, True):
            answer = await http.post("/v1/responses", json={"input": "x", "stream": stream})
            assert answer.status_code == 429 and answer.headers["retry-after"] == "7"
            assert answer.json()["error"]["message"] == "slow down"


async def test_failure_after_output_is_response_failed(nursery: trio.Nursery) -> None:
    failing = ScriptedProvider(fail=ProviderError("upstream", "cut"), fail_after=1)
    server = await serve(nursery, failing)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        answer = await http.post("/v1/responses", json={"input": "x", "stream": True})
        events = sse(answer.text)
        assert [kind for kind, _ in events][-2:] == ["response.failed", ""]
        failed = events[-2][1]["response"]  # type: ignore[index]
        assert failed["status"] == "failed"
        assert failed["error"] == {"code": "server_error", "message": "cut"}
        assert failed["output"][0]["status"] == "incomplete"
        # Stored as it ended.
        stored = (await http.get(f"/v1/responses/{failed['id']}")).json()
        assert stored["status"] == "failed"


async def test_output_limit_is_incomplete(nursery: trio.Nursery) -> None:
    server = await serve(nursery, None, {"agents": {"defaults": {"model": "echo/echo"}}})
    async with client(server) as sdk:
        response = await sdk.responses.create(
            model="openclaw", input="one two three four", max_output_tokens=2
        )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "one two "


async def test_session_transcript_and_header(nursery: trio.Nursery) -> None:
    store = MemoryStore()
    scripted = ScriptedProvider(words=["r"])
    server = await serve(nursery, scripted, store=store)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        first = await http.post("/v1/responses", json={"input": "a", "user": "Ann"})
        key = "agent:main:openresponses-user:ann"
        assert first.headers["x-openclaw-session-key"] == key
        await http.post("/v1/responses", json={"input": "b", "user": "Ann"})
        # With a previous response, the chain is the context, not the transcript.
        await http.post(
            "/v1/responses",
            json={"input": "c", "user": "Ann", "previous_response_id": first.json()["id"]},
        )
    assert [turn[0][0]["content"] for turn in store.turns[key]] == ["a", "b", "c"]
    assert [m["content"] for m in scripted.calls[1].request.messages] == ["a", "r", "b"]
    assert [m["content"] for m in scripted.calls[2].request.messages] == ["a", "r", "c"]


async def test_switches_are_independent(nursery: trio.Nursery) -> None:
    only_chat = {"gateway": {"http": {"endpoints": {"responses": {"enabled": False}}}}}
    server = await start_server(nursery, only_chat)
    only_responses = {
        "gateway": {
            "http": {
                "endpoints": {"chatCompletions": {"enabled": False}, "responses": {"enabled": True}}
            }
        }
    }
    other = await start_server(nursery, only_responses)
    async with httpx.AsyncClient(headers=AUTH) as http:
        gone = await http.post(f"{server.url}/v1/responses", json={"input": "x"})
        assert (gone.status_code, gone.text) == (404, "Not Found")
        assert (
            await http.post(f"{other.url}/v1/responses", json={"input": "x"})
        ).status_code == 200
        assert (await http.post(f"{other.url}/v1/chat/completions", json={})).status_code == 404
        assert (await http.get(f"{other.url}/v1/models")).status_code == 200
        assert (await http.get(f"{other.url}/v1/responses/resp_1")).status_code == 404
        assert (await http.get(f"{server.url}/v1/responses/resp_1")).text == "Not Found"
        wrong = await http.get(f"{other.url}/v1/responses")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        wrong_token = {"Authorization": "Bearer no"}
        denied = await http.post(f"{other.url}/v1/responses", json={}, headers=wrong_token)
        assert denied.status_code == 401


async def test_a_store_that_keeps_nothing_in_memory_between_servers(nursery: trio.Nursery) -> None:
    """The response store is the server's: another server on the same store sees it."""
    shared = MemoryResponses()
    one = await serve(nursery, ScriptedProvider(words=["x"]), responses=shared)
    two = await serve(nursery, ScriptedProvider(words=["y"]), responses=shared)
    async with httpx.AsyncClient(headers=AUTH) as http:
        made = (await http.post(f"{one.url}/v1/responses", json={"input": "q"})).json()
        seen = await http.get(f"{two.url}/v1/responses/{made['id']}")
    assert seen.json()["output"][0]["content"][0]["text"] == "x"
