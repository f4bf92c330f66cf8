"""Operating the server: metrics, request ids and access logs, CORS."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from gateway.logs import JsonFormatter, RequestIdFilter
from tests.harness import AUTH, ScriptedProvider, start_server
from tests.rawhttp import open_request, read_until

METRICS = {"gateway": {"http": {"metrics": {"enabled": True}}}}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_scraped_and_parsed(nursery: trio.Nursery) -> None:
    slow = ScriptedProvider(words=[f"w{i} " for i in range(1000)], delay=0.01)
    config = {
        **METRICS,
        "agents": {"list": [{"id": "main"}, {"id": "slow", "model": "scripted/s"}]},
    }
    server = await start_server(nursery, config, providers={"scripted": slow})
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        ok = await client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "a b c"}]}
        )
        assert ok.status_code == 200
        assert (await client.post("/v1/chat/completions", json={})).status_code == 400
        stream = await open_request(
            server.url,
            {
                "model": "openclaw:slow",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
        )
        await read_until(stream, b'"content":"w0 "')
        await stream.aclose()
        with trio.fail_after(2):
            await slow.calls[0].ended.wait()
        await trio.testing.wait_all_tasks_blocked()
        scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    values = samples(scraped.text)
    route = "/v1/chat/completions"
    assert (
        values[
            (
                "gateway_http_requests_total",
                (("method", "POST"), ("route", route), ("status", "200")),
            )
        ]
        == 2
    )
    assert (
        values[
            (
                "gateway_http_requests_total",
                (("method", "POST"), ("route", route), ("status", "400")),
            )
        ]
        == 1
    )
    assert values[("gateway_runs_active", ())] == 0
    assert values[("gateway_runs_queued", ())] == 0
    cancelled = (("phase", "streaming"), ("reason", "client_gone"))
    assert values[("gateway_run_cancellations_total", cancelled)] == 1
    assert (
        values[
            (
                "gateway_tokens_total",
                (("agent", "main"), ("direction", "out"), ("model", "echo/echo")),
            )
        ]
        == 3
    )
    ttft_count = ("gateway_run_ttft_seconds_count", (("agent", "main"), ("model", "echo/echo")))
    assert values[ttft_count] == 1
    duration = (
        "gateway_run_duration_seconds_count",
        (("agent", "main"), ("model", "echo/echo"), ("outcome", "complete")),
    )
    assert values[duration] == 1


async def test_metrics_off_by_default_and_optionally_behind_auth(nursery: trio.Nursery) -> None:
    plain = await start_server(nursery)
    guarded = await start_server(
        nursery, {"gateway": {"http": {"metrics": {"enabled": True, "auth": True}}}}
    )
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{plain.url}/metrics")).status_code == 404
        assert (await client.get(f"{guarded.url}/metrics")).status_code == 401
        assert (await client.get(f"{guarded.url}/metrics", headers=AUTH)).status_code == 200


async def test_upstream_errors_are_counted(nursery: trio.Nursery) -> None:
    from gateway.providers.base import ProviderError

    failing = ScriptedProvider(fail=ProviderError("rate_limited", "slow down"))
    config = {**METRICS, "agents": {"defaults": {"model": "scripted/x"}}}
    server = await start_server(nursery, config, providers={"scripted": failing})
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        assert (
            await client.post(
                "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
            )
        ).status_code == 429
        values = samples((await client.get("/metrics")).text)
    assert (
        values[
            ("gateway_upstream_errors_total", (("kind", "rate_limited"), ("provider", "scripted")))
        ]
        == 1
    )


async def test_request_id_echoed_or_created_and_logged(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(nursery)
    caplog.set_level(logging.INFO, logger="gateway.access")
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as client:
        mine = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
            headers={"X-Request-Id": "req-123"},
        )
        made = await client.get("/health", headers={"X-Request-Id": "bad id with spaces"})
    assert mine.headers["x-request-id"] == "req-123"
    assert len(made.headers["x-request-id"]) == 32
    await trio.testing.wait_all_tasks_blocked()
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    chat = next(r for r in lines if r.path == "/v1/chat/completions")
    assert chat.status == 200 and chat.complete is True and chat.stream is True
    assert chat.agent == "main" and chat.model == "echo/echo" and chat.outcome == "complete"
    assert chat.completion_tokens == 1 and chat.bytes > 0 and chat.ttft_ms is not None
    record = logging.makeLogRecord({"msg": "request", "name": "gateway.access", **chat.__dict__})
    RequestIdFilter().filter(record)
    decoded = json.loads(JsonFormatter().format(record))
    assert decoded["msg"] == "request" and decoded["outcome"] == "complete"
    assert "authorization" not in json.dumps(decoded).lower()


async def test_cors(nursery: trio.Nursery) -> None:
    config = {"gateway": {"http": {"cors": {"allowOrigins": ["https://app.example"]}}}}
    server = await start_server(nursery, config)
    preflight_headers = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": (
            "authorization, content-type, x-openclaw-agent-id, x-stainless-os, x-evil"
        ),
    }
    async with httpx.AsyncClient(base_url=server.url) as client:
        preflight = await client.options("/v1/chat/completions", headers=preflight_headers)
        refused = await client.options(
            "/v1/chat/completions", headers={**preflight_headers, "Origin": "https://evil.example"}
        )
        actual = await client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={**AUTH, "Origin": "https://app.example"},
        )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert preflight.headers["access-control-allow-headers"] == (
        "authorization, content-type, x-openclaw-agent-id, x-stainless-os"
    )
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert refused.status_code == 405
    assert "access-control-allow-origin" not in refused.headers
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-openclaw-session-key" in actual.headers["access-control-expose-headers"]


async def test_cors_off_by_default(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.options(
            "/v1/chat/completions",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers
