"""What ``health`` and ``status`` report: every field the OpenClaw CLI reads, with the store's
real numbers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.sessions.admission import LocalAdmission
from gateway.sessions.base import SessionInfo
from gateway.sessions.sqlite import SQLiteTranscripts
from gateway.settings import AgentSettings, AgentsSettings
from gateway.ws.health import (
    SessionFacts,
    SessionStats,
    context_window,
    health_payload,
    status_summary,
)
from gateway.ws.protocol import Request
from tests.harness import settings_from
from tests.memory_store import MemoryResponses
from tests.ws.test_hub import FakePeer

AGENTS = AgentsSettings(agents=(AgentSettings(id="main"), AgentSettings(id="ops", name="Ops")))
NOW = 1_000_000


def assert_sessions_shape(sessions: Any) -> None:
    assert isinstance(sessions["path"], str) and sessions["path"]
    assert isinstance(sessions["count"], int)
    for entry in sessions["recent"]:
        assert set(entry) == {"key", "updatedAt", "age"}
        assert isinstance(entry["key"], str)
        assert isinstance(entry["age"], int) and entry["age"] >= 0


def assert_health_shape(payload: dict[str, Any]) -> None:
    """The fields ``openclaw health`` reads (required in the protocol's health summary)."""
    assert payload["ok"] is True
    for name in ("ts", "durationMs", "heartbeatSeconds"):
        assert isinstance(payload[name], int), name
    assert isinstance(payload["defaultAgentId"], str)
    assert payload["channels"] == {} and payload["channelOrder"] == []
    assert payload["channelLabels"] == {}
    assert payload["plugins"] == {"loaded": [], "errors": []}
    assert payload["agents"], "at least the default agent"
    for agent in payload["agents"]:
        assert isinstance(agent["agentId"], str) and isinstance(agent["isDefault"], bool)
        assert agent["heartbeat"] == {
            "enabled": False,
            "every": "disabled",
            "everyMs": None,
            "prompt": "",
            "target": "none",
            "ackMaxChars": 0,
        }
        assert_sessions_shape(agent["sessions"])
    assert_sessions_shape(payload["sessions"])


def info(key: str, agent_id: str, updated_at: int) -> SessionInfo:
    return SessionInfo(key, agent_id, updated_at - 10, updated_at, 2)


FACTS = SessionFacts(
    "/state/gateway/sessions.sqlite3",
    SessionStats(3, (info("agent:ops:x", "ops", NOW - 5), info("agent:main:main", "main", NOW))),
    {"main": SessionStats(2, (info("agent:main:main", "main", NOW - 60_000),))},
)


def test_health_payload_has_every_field_the_cli_reads() -> None:
    payload = health_payload(AGENTS, FACTS, now_ms=NOW, duration_ms=3)
    assert_health_shape(payload)
    assert (payload["ts"], payload["durationMs"], payload["defaultAgentId"]) == (NOW, 3, "main")
    main, ops = payload["agents"]
    assert (main["agentId"], main["isDefault"], "name" in main) == ("main", True, False)
    assert (ops["agentId"], ops["isDefault"], ops["name"]) == ("ops", False, "Ops")
    assert main["sessions"] == {
        "path": "/state/gateway/sessions.sqlite3",
        "count": 2,
        "recent": [{"key": "agent:main:main", "updatedAt": NOW - 60_000, "age": 60_000}],
    }
    # An agent the store has no sessions for has none, not an error.
    assert ops["sessions"] == {"path": "/state/gateway/sessions.sqlite3", "count": 0, "recent": []}
    assert payload["sessions"]["count"] == 3
    # A clock step backwards never makes an age negative.
    assert [r["age"] for r in payload["sessions"]["recent"]] == [5, 0]
    # Subsystems the gateway does not have are not reported at all.
    assert not {"eventLoop", "configReload", "modelRuntime", "contextEngines"} & set(payload)


def test_health_payload_without_the_store() -> None:
    """A snapshot may leave out what it could not read (the protocol's fields are optional)."""
    payload = health_payload(AGENTS, None, now_ms=NOW, duration_ms=0)
    assert not {"ok", "agents", "sessions"} & set(payload)
    assert payload["defaultAgentId"] == "main" and payload["channelOrder"] == []


def test_status_summary_has_what_status_json_reads() -> None:
    settings = settings_from(
        {
            "models": {
                "providers": {
                    "up": {
                        "baseUrl": "http://127.0.0.1:9/v1",
                        "models": [{"id": "m", "contextWindow": 8192}],
                    }
                }
            },
            "agents": {"defaults": {"model": "up/m"}, "list": [{"id": "main"}, {"id": "ops"}]},
        }
    )
    summary = status_summary(settings.agents, settings.providers, FACTS, now_ms=NOW)
    assert summary["heartbeat"] == {
        "defaultAgentId": "main",
        "agents": [
            {"agentId": a, "enabled": False, "every": "disabled", "everyMs": None}
            for a in ("main", "ops")
        ],
    }
    assert summary["channelSummary"] == [] and summary["queuedSystemEvents"] == []
    sessions = summary["sessions"]
    assert sessions["paths"] == ["/state/gateway/sessions.sqlite3"]
    assert sessions["count"] == 3 and sessions["recent"] == []
    assert sessions["defaults"] == {"model": "up/m", "contextTokens": 8192}
    assert [(a["agentId"], a["count"]) for a in sessions["byAgent"]] == [("main", 2), ("ops", 0)]
    assert sessions["byAgent"][0]["recent"][0]["age"] == 60_000


def test_context_window() -> None:
    providers = settings_from(
        {"models": {"providers": {"up": {"baseUrl": "http://h/v1", "models": [{"id": "a/b"}]}}}}
    ).providers
    assert context_window(providers, "up/a/b") is None  # known model, no window configured
    assert context_window(providers, "up/other") is None
    assert context_window(providers, "nope/m") is None
    assert context_window(providers, None) is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteTranscripts]:
    store = SQLiteTranscripts(tmp_path / "gateway")
    try:
        yield store
    finally:
        await store.aclose()


async def test_health_and_status_methods_report_the_store(store: SQLiteTranscripts) -> None:
    settings = settings_from({"agents": {"list": [{"id": "main"}, {"id": "ops"}]}})
    gateway = create_app(
        settings, transcripts=store, admission=LocalAdmission(4), responses=MemoryResponses()
    )
    handlers = gateway.ws.handlers
    for key, agent in [("agent:main:a", "main"), ("agent:main:b", "main"), ("agent:ops:c", "ops")]:
        await store.append_turn(key, agent, "r", [{"role": "user", "content": "hi"}], "complete")

    health = await handlers.call(FakePeer("p"), Request("1", "health"))
    assert_health_shape(health)
    path = str(store.directory / "sessions.sqlite3")
    assert health["sessions"]["path"] == path and health["sessions"]["count"] == 3
    main, ops = health["agents"]
    assert (main["sessions"]["count"], ops["sessions"]["count"]) == (2, 1)
    recent = main["sessions"]["recent"]
    assert {r["key"] for r in recent} == {"agent:main:a", "agent:main:b"}
    assert recent[0]["updatedAt"] >= recent[1]["updatedAt"]  # newest first
    snapshot = await handlers.health_snapshot()  # hello-ok's: the same report
    assert_health_shape(snapshot)
    assert [a["sessions"]["count"] for a in snapshot["agents"]] == [2, 1]

    status = await handlers.call(FakePeer("p"), Request("2", "status"))
    assert status["runs"]["active"] == 0
    assert status["sessions"]["count"] == 3 and status["sessions"]["paths"] == [path]
    assert [(a["agentId"], a["count"]) for a in status["sessions"]["byAgent"]] == [
        ("main", 2),
        ("ops", 1),
    ]


async def test_snapshot_survives_a_failing_store(store: SQLiteTranscripts) -> None:
    handlers = create_app(
        settings_from(), transcripts=store, admission=LocalAdmission(4), responses=MemoryResponses()
    ).ws.handlers
    await store.aclose()  # every read now fails
    snapshot = await handlers.health_snapshot()
    assert "agents" not in snapshot and snapshot["defaultAgentId"] == "main"
