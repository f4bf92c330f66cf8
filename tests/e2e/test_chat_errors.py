"""Every status and error message of ``POST /v1/chat/completions`` (contract §2), in check order,
through the real server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio

from tests.harness import AUTH, TOKEN, start_server

USER = [{"role": "user", "content": "hi"}]


async def post(
    url: str, body: Any = None, headers: dict[str, str] | None = None, **kw: Any
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url) as client:
        if body is not None and "content" not in kw:
            kw["json"] = body
        return await client.post(
            "/v1/chat/completions", headers=AUTH if headers is None else headers, **kw
        )


def assert_error(response: httpx.Response, status: int, message: str, type_: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "error": {
            "message": message,
            "type": type_,
            "param": response.json()["error"]["param"],
            "code": response.json()["error"]["code"],
        }
    }


async def test_disabled_endpoint_is_plain_404(nursery: trio.Nursery) -> None:
    config = {"gateway": {"http": {"endpoints": {"chatCompletions": {"enabled": False}}}}}
    server = await start_server(nursery, config)
    async with httpx.AsyncClient(base_url=server.url) as client:
        for method in ("POST", "GET"):
            response = await client.request(method, "/v1/chat/completions", headers=AUTH)
            assert response.status_code == 404
            assert response.text == "Not Found"
            assert response.headers["content-type"].startswith("text/plain")
        assert (await client.get("/v1/models", headers=AUTH)).status_code == 404


async def test_unknown_path_is_plain_404(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/v2/nothing")
    assert response.status_code == 404
    assert response.text == "Not Found"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
async def test_wrong_method_is_405_before_auth(nursery: trio.Nursery, method: str) -> None:
    server = await start_server(nursery)
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.request(method, "/v1/chat/completions")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ],
)
async def test_unauthorized(nursery: trio.Nursery, headers: dict[str, str]) -> None:
    server = await start_server(nursery)
    response = await post(server.url, {"messages": USER}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": {"message": "Unauthorized", "type": "unauthorized", "param": None, "code": None}
    }


async def test_bearer_prefix_is_case_insensitive_and_value_trimmed(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    response = await post(
        server.url, {"messages": USER}, headers={"Authorization": f"bEaReR   {TOKEN}"}
    )
    assert response.status_code == 200


async def test_password_mode(nursery: trio.Nursery) -> None:
    config = {"gateway": {"auth": {"mode": None, "token": None, "password": "pw"}}}
    server = await start_server(nursery, config)
    ok = await post(server.url, {"messages": USER}, headers={"Authorization": "Bearer pw"})
    assert ok.status_code == 200
    assert (await post(server.url, {"messages": USER})).status_code == 401


async def test_token_mode_without_token_refuses_everyone(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, {"gateway": {"auth": {"token": None}}})
    response = await post(server.url, {"messages": USER}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
    assert (await post(server.url, {"messages": USER})).status_code == 401


async def test_rate_limit_locks_out_after_wrong_secrets(nursery: trio.Nursery) -> None:
    limit = {"maxAttempts": 3, "windowMs": 60_000, "lockoutMs": 30_000, "exemptLoopback": False}
    server = await start_server(nursery, {"gateway": {"auth": {"rateLimit": limit}}})
    wrong = {"Authorization": "Bearer nope"}
    # A missing secret is not an attempt; success resets the count.
    for _ in range(5):
        assert (await post(server.url, {"messages": USER}, headers={})).status_code == 401
    for _ in range(2):
        assert (await post(server.url, {"messages": USER}, headers=wrong)).status_code == 401
    assert (await post(server.url, {"messages": USER})).status_code == 200
    for _ in range(3):  # the third wrong secret is still a 401; it starts the lockout
        assert (await post(server.url, {"messages": USER}, headers=wrong)).status_code == 401
    locked = await post(server.url, {"messages": USER}, headers=wrong)
    assert_error(
        locked, 429, "Too many failed authentication attempts; try again later.", "rate_limited"
    )
    assert locked.headers["retry-after"] == "30"
    # Locked out: even the right secret waits.
    assert (await post(server.url, {"messages": USER})).status_code == 429


async def test_rate_limit_of_one_attempt(nursery: trio.Nursery) -> None:
    limit = {"maxAttempts": 1, "windowMs": 60_000, "lockoutMs": 30_000, "exemptLoopback": False}
    server = await start_server(nursery, {"gateway": {"auth": {"rateLimit": limit}}})
    wrong = {"Authorization": "Bearer nope"}
    assert (await post(server.url, {"messages": USER}, headers=wrong)).status_code == 401
    assert (await post(server.url, {"messages": USER}, headers=wrong)).status_code == 429


async def test_rate_limit_exempts_loopback_by_default(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, {"gateway": {"auth": {"rateLimit": {"maxAttempts": 1}}}})
    for _ in range(3):
        response = await post(server.url, {"messages": USER}, headers={"Authorization": "Bearer x"})
        assert response.status_code == 401


async def test_body_too_large_from_content_length(nursery: trio.Nursery) -> None:
    config = {"gateway": {"http": {"endpoints": {"chatCompletions": {"maxBodyBytes": 100}}}}}
    server = await start_server(nursery, config)
    big = {"messages": [{"role": "user", "content": "x" * 200}]}
    response = await post(server.url, big)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_chunked_body_too_large(nursery: trio.Nursery) -> None:
    config = {"gateway": {"http": {"endpoints": {"chatCompletions": {"maxBodyBytes": 100}}}}}
    server = await start_server(nursery, config)

    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 50

    response = await post(server.url, content=chunks())
    assert response.status_code == 413
    assert "error" in response.json()


async def test_invalid_json(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    response = await post(server.url, content=b'{"messages": [')
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("Invalid JSON body: ")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([1, 2], "The request body must be a JSON object."),
        ({}, "`messages` must be a non-empty array."),
        ({"messages": []}, "`messages` must be a non-empty array."),
        ({"messages": "hi"}, "`messages` must be a non-empty array."),
        ({"messages": ["hi"]}, "`messages[0]` must be an object."),
        ({"messages": [{"content": "hi"}]}, "`messages[0].role` must be a string."),
        ({"messages": [{"role": 3, "content": "hi"}]}, "`messages[0].role` must be a string."),
        (
            {"messages": [{"role": "system", "content": "be nice"}]},
            "Missing user message in `messages`.",
        ),
        (
            {"messages": [{"role": "user", "content": "   "}]},
            "Missing user message in `messages`.",
        ),
        (
            {"messages": [{"role": "assistant", "content": "hello"}]},
            "Missing user message in `messages`.",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
            "Missing user message in `messages`.",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": " "}]}]},
            "Missing user message in `messages`.",
        ),
        (
            {"messages": [{"role": "user", "content": []}]},
            "Missing user message in `messages`.",
        ),
        (
            {"model": "gpt-4o", "messages": USER},
            "Invalid `model`. Use `openclaw` or `openclaw/<agentId>`.",
        ),
        ({"model": 4, "messages": USER}, "`model` must be a string."),
        ({"model": "openclaw:ghost", "messages": USER}, "Unknown agent 'ghost'."),
        ({"messages": USER, "temperature": 3}, "`temperature` must be a number between 0 and 2."),
        ({"messages": USER, "top_p": -1}, "`top_p` must be a number between 0 and 1."),
        ({"messages": USER, "max_tokens": 0}, "`max_tokens` must be a positive integer."),
        ({"messages": USER, "n": 2}, "`n` greater than 1 is not supported."),
        (
            {"messages": USER, "stop": [1]},
            "`stop` must be a string or an array of up to 4 strings.",
        ),
        ({"messages": USER, "stream": "yes"}, "`stream` must be a boolean."),
        (
            {"messages": USER, "tools": [{"type": "function"}]},
            '`tools[0]` must be {"type": "function", "function": {"name": ...}}.',
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}],
                    }
                ]
            },
            "`messages[0].content[0]`: remote image URLs are not supported; send the image as a "
            "data: URI.",
        ),
        (
            {"messages": [{"role": "tool", "content": "42"}]},
            "`messages[0].tool_call_id` must be a non-empty string without NUL characters.",
        ),
        (
            {"messages": [{"role": "tool", "tool_call_id": "a\x00b", "content": "42"}]},
            "`messages[0].tool_call_id` must be a non-empty string without NUL characters.",
        ),
        (
            {"messages": [{"role": "user", "name": "a\x00", "content": "hi"}]},
            "`messages[0].name` must be a string without NUL characters.",
        ),
        ({"messages": USER, "user": "a\x00b"}, "`user` must not contain NUL characters."),
    ],
)
async def test_invalid_content(nursery: trio.Nursery, body: Any, message: str) -> None:
    server = await start_server(nursery)
    response = await post(server.url, body)
    assert_error(response, 400, message, "invalid_request_error")


async def test_reserved_session_key(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    for key in ("subagent:x", "cron:nightly", "ACP:1"):
        response = await post(
            server.url, {"messages": USER}, headers={**AUTH, "x-openclaw-session-key": key}
        )
        assert response.status_code == 400
        assert "reserved" in response.json()["error"]["message"]


async def test_unknown_agent_in_header(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    response = await post(
        server.url, {"messages": USER}, headers={**AUTH, "x-openclaw-agent-id": "Ghost"}
    )
    assert_error(response, 400, "Unknown agent 'ghost'.", "invalid_request_error")


async def test_security_headers_on_every_response(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with httpx.AsyncClient(base_url=server.url) as client:
        for response in (
            await client.get("/nothing"),
            await client.get("/health"),
            await client.post("/v1/chat/completions", json={}),
        ):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
