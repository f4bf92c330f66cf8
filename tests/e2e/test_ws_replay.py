"""Replaying the OpenClaw CLI's recorded frames against our server.

``tests/ws/data/captures.json`` holds the WebSocket frames of ``shared/notes/ws-captures``
(recorded between the CLI and the reference gateway; the secret is redacted there and replaced
by the test token here). Each test sends the client's frames as recorded (ids, params) and checks
that our answers have the recorded shape where a client reads them: the same paths, holding the
same JSON types. Values may differ (other agents, other texts, other times).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from gateway.sessions.sqlite import SQLiteTranscripts
from tests.harness import TOKEN, ScriptedProvider, Server, start_server
from tests.ws.wsclient import Frame, WsClient

CAPTURES: dict[str, list[Frame]] = json.loads(
    (Path(__file__).parents[1] / "ws" / "data" / "captures.json").read_text()
)["captures"]
FAKE_WORDS = ["[fake#1]", " w1", " w2", " w3", " w4", " w5", " w6", " w7"]
CONFIG = {
    "models": {
        "providers": {
            "fake": {
                "models": [{"id": "fake-model", "name": "Fake Model", "contextWindow": 128000}]
            }
        }
    },
    "agents": {"defaults": {"model": "fake/fake-model"}},
}


def at(value: Any, path: str) -> Any:
    """``value`` at a dotted path; ``name[i]`` indexes a list. Raises ``KeyError`` if absent."""
    for part in path.split("."):
        name, _, index = part.partition("[")
        if name:
            if not isinstance(value, dict) or name not in value:
                raise KeyError(path)
            value = value[name]
        if index:
            position = int(index.rstrip("]"))
            if not isinstance(value, list) or len(value) <= position:
                raise KeyError(path)
            value = value[position]
    return value


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def assert_same_shape(ours: Any, recorded: Any, paths: list[str]) -> None:
    for path in paths:
        expected = json_type(at(recorded, path))  # the path is in the recording ...
        try:
            found = json_type(at(ours, path))  # ... and must be in ours, with the same type
        except KeyError:
            raise AssertionError(f"{path} missing in {json.dumps(ours)[:2000]}") from None
        assert found == expected, f"{path}: {found} != recorded {expected}"


class Replay:
    """Sends one capture's client frames; keeps our frames and the recorded ones by kind."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.recorded = CAPTURES[name]
        self.ours: list[Frame] = []
        self.ws: WsClient | None = None

    def recorded_responses(self, request_id: str) -> list[Frame]:
        return [
            f["msg"]
            for f in self.recorded
            if f["dir"] == "s2c" and "msg" in f and f["msg"].get("id") == request_id
        ]

    def our_responses(self, request_id: str) -> list[Frame]:
        return [f for f in self.ours if f["type"] == "res" and f["id"] == request_id]

    def recorded_event(self, predicate: Callable[[Frame], bool]) -> Frame:
        return next(
            f["msg"]
            for f in self.recorded
            if f["dir"] == "s2c"
            and "msg" in f
            and f["msg"]["type"] == "event"
            and predicate(f["msg"])
        )

    def our_event(self, predicate: Callable[[Frame], bool]) -> Frame:
        return next(f for f in self.ours if f["type"] == "event" and predicate(f))

    async def run(self, server: Server) -> None:
        ws = self.ws = await WsClient.connect(server.url)
        self.ours.append(await ws.receive_json())
        server_closed = False
        for frame in self.recorded:
            if "msg" not in frame and frame["dir"] == "s2c":
                # The server closed first (a refused connect): the client only answered.
                assert (await ws.wait_closed()).code == frame["close"]
                server_closed = True
            if frame["dir"] != "c2s":
                continue
            if "msg" not in frame:
                if not server_closed:
                    # The CLI ends with an empty close frame, echoed by the server.
                    assert (await ws.send_close(frame["close"])).code == frame["close"]
                return
            message = json.loads(
                json.dumps(frame["msg"]).replace("<REDACTED:gateway-token>", TOKEN)
            )
            if message["method"] == "chat.abort":
                # Like the recording: Ctrl-C after the reply has started streaming.
                while not any(f.get("payload", {}).get("state") == "delta" for f in self.ours):
                    self.ours.append(await ws.receive_json())
            await ws.send_json(message)
            wanted = len(self.recorded_responses(message["id"]))
            while len(self.our_responses(message["id"])) < wanted:
                self.ours.append(await ws.receive_json())


@pytest.fixture
async def server(nursery: trio.Nursery, tmp_path: Path) -> Server:
    fake = ScriptedProvider("fake", words=FAKE_WORDS)
    store = SQLiteTranscripts(tmp_path / "gateway")
    return await start_server(nursery, CONFIG, providers={"fake": fake}, store=store)


def fake_provider(server: Server) -> ScriptedProvider:
    provider, _ = server.gateway.runtime.providers.resolve("fake/x")
    assert isinstance(provider, ScriptedProvider)
    return provider


async def replay(server: Server, name: str) -> Replay:
    session = Replay(name)
    with trio.fail_after(5):
        await session.run(server)
    challenge = session.ours[0]
    recorded_challenge = session.recorded[0]["msg"]
    assert_same_shape(
        challenge, recorded_challenge, ["type", "event", "payload.nonce", "payload.ts"]
    )
    assert "seq" not in challenge
    return session


def lifecycle(phase: str) -> Callable[[Frame], bool]:
    return lambda frame: (
        frame["event"] == "agent" and frame["payload"]["data"].get("phase") == phase
    )


def stream(name: str) -> Callable[[Frame], bool]:
    return lambda frame: frame["event"] == "agent" and frame["payload"]["stream"] == name


def chat(state: str) -> Callable[[Frame], bool]:
    return lambda frame: frame["event"] == "chat" and frame["payload"]["state"] == state


HELLO = [
    "type",
    "id",
    "ok",
    "payload.type",
    "payload.protocol",
    "payload.server.version",
    "payload.server.connId",
    "payload.features.methods",
    "payload.features.events",
    "payload.snapshot.presence",
    "payload.snapshot.health.ok",
    "payload.snapshot.health.defaultAgentId",
    "payload.snapshot.health.agents[0].agentId",
    "payload.snapshot.uptimeMs",
    "payload.snapshot.sessionDefaults.defaultAgentId",
    "payload.snapshot.sessionDefaults.mainSessionKey",
    "payload.auth.method",
    "payload.auth.role",
    "payload.auth.scopes",
    "payload.policy.maxPayload",
    "payload.policy.maxBufferedBytes",
    "payload.policy.tickIntervalMs",
]


def check_call(session: Replay, method: str, paths: list[str]) -> tuple[Frame, Frame]:
    """The recorded and our response to the capture's request ``method``, same shape."""
    request = next(
        f["msg"]
        for f in session.recorded
        if f["dir"] == "c2s" and f.get("msg", {}).get("method") == method
    )
    [recorded] = session.recorded_responses(request["id"])
    [ours] = session.our_responses(request["id"])[:1]
    assert set(ours) == set(recorded)
    assert_same_shape(ours, recorded, ["type", "id", "ok", *paths])
    return ours, recorded


@pytest.mark.parametrize(
    ("name", "method", "paths"),
    [
        (
            "health",
            "health",
            [
                "payload.ok",
                "payload.ts",
                "payload.durationMs",
                "payload.defaultAgentId",
                "payload.agents[0].agentId",
                "payload.agents[0].isDefault",
                "payload.sessions.count",
                "payload.sessions.recent",
                "payload.heartbeatSeconds",
                "payload.channels",
                "payload.channelOrder",
                "payload.channelLabels",
            ],
        ),
        (
            "call-agents.list",
            "agents.list",
            [
                "payload.defaultId",
                "payload.mainKey",
                "payload.scope",
                "payload.agents[0].id",
                "payload.agents[0].model.primary",
            ],
        ),
        (
            "call-models.list",
            "models.list",
            [
                "payload.models[0].id",
                "payload.models[0].name",
                "payload.models[0].provider",
                "payload.models[0].contextWindow",
            ],
        ),
    ],
)
async def test_read_calls(server: Server, name: str, method: str, paths: list[str]) -> None:
    session = await replay(server, name)
    connect_id = session.recorded[1]["msg"]["id"]
    [hello] = session.our_responses(connect_id)
    assert_same_shape(hello, session.recorded_responses(connect_id)[0], HELLO)
    ours, _ = check_call(session, method, paths)
    if method == "models.list":
        assert ours["payload"]["models"][0] == {
            "id": "fake-model",
            "name": "Fake Model",
            "provider": "fake",
            "contextWindow": 128000,
        }


async def test_agent_runs_as_recorded(server: Server) -> None:
    for name, key in (
        ("agent-hi", "agent:main:main"),
        ("agent-session-key", "agent:main:capture-key"),
    ):
        session = await replay(server, name)
        request = next(
            f["msg"] for f in session.recorded if f.get("msg", {}).get("method") == "agent"
        )
        recorded_accepted, recorded_final = session.recorded_responses(request["id"])
        accepted, final = session.our_responses(request["id"])
        accepted_paths = [
            "payload.runId",
            "payload.sessionKey",
            "payload.agentId",
            "payload.status",
            "payload.acceptedAt",
        ]
        assert_same_shape(accepted, recorded_accepted, accepted_paths)
        for path in ("payload.runId", "payload.sessionKey", "payload.agentId", "payload.status"):
            assert at(accepted, path) == at(recorded_accepted, path)
        assert accepted["payload"]["sessionKey"] == key
        final_paths = [
            "payload.runId",
            "payload.status",
            "payload.summary",
            "payload.result.payloads[0].text",
            "payload.result.payloads[0].mediaUrl",
            "payload.result.meta.durationMs",
            "payload.result.meta.aborted",
            "payload.result.meta.stopReason",
            "payload.result.meta.agentMeta.usage",
        ]
        assert_same_shape(final, recorded_final, final_paths)
        for path in [*final_paths[:3], "payload.result.meta.stopReason"]:
            assert at(final, path) == at(recorded_final, path), path
        assert final["payload"]["result"]["payloads"][0]["text"] == "".join(FAKE_WORDS)

        base = [
            "type",
            "event",
            "seq",
            "payload.runId",
            "payload.sessionKey",
            "payload.agentId",
            "payload.seq",
        ]
        for predicate, paths in (
            (lifecycle("start"), ["payload.stream", "payload.ts", "payload.data.startedAt"]),
            (stream("assistant"), ["payload.data.text", "payload.data.delta"]),
            (stream("usage"), ["payload.data.outputTokens"]),
            (
                lifecycle("end"),
                [
                    "payload.data.aborted",
                    "payload.data.stopReason",
                    "payload.data.startedAt",
                    "payload.data.endedAt",
                ],
            ),
            (
                chat("delta"),
                [
                    "payload.state",
                    "payload.deltaText",
                    "payload.message.role",
                    "payload.message.content[0].type",
                    "payload.message.content[0].text",
                    "payload.message.timestamp",
                ],
            ),
            (chat("final"), ["payload.stopReason", "payload.message.content[0].text"]),
        ):
            assert_same_shape(
                session.our_event(predicate), session.recorded_event(predicate), base + paths
            )


async def test_ctrl_c_aborts_as_recorded(server: Server) -> None:
    fake = fake_provider(server)
    fake.words = [f" w{i}" for i in range(1000)]
    fake.delay = 0.01
    session = await replay(server, "agent-sigint")
    ours, recorded = check_call(
        session, "chat.abort", ["payload.ok", "payload.aborted", "payload.runIds"]
    )
    assert ours["payload"] == recorded["payload"]
    assert fake.calls[-1].cancelled

    def aborted(f: Frame) -> bool:
        return f["event"] == "chat" and f["payload"]["state"] == "aborted"

    def ended(f: Frame) -> bool:
        return f["event"] == "agent" and f["payload"]["data"].get("phase") == "end"

    assert_same_shape(
        session.our_event(aborted),
        session.recorded_event(aborted),
        ["payload.runId", "payload.state", "payload.stopReason", "payload.message.content[0].text"],
    )
    assert session.our_event(aborted)["payload"]["stopReason"] == "rpc"
    assert_same_shape(
        session.our_event(ended),
        session.recorded_event(ended),
        ["payload.data.aborted", "payload.data.stopReason", "payload.data.status"],
    )


async def test_stored_sessions_and_history_as_recorded(server: Server) -> None:
    # What the recording's gateway had stored: a finished run, then one aborted mid-reply.
    await replay(server, "agent-hi")
    fake = fake_provider(server)
    fake.words = [f" w{i}" for i in range(1000)]
    fake.delay = 0.01
    await replay(server, "agent-sigint")

    sessions = await replay(server, "call-sessions.list")
    ours, _ = check_call(
        sessions,
        "sessions.list",
        [
            "payload.ts",
            "payload.count",
            "payload.sessions[0].key",
            "payload.sessions[0].agentId",
            "payload.sessions[0].kind",
            "payload.sessions[0].isMain",
            "payload.sessions[0].createdAt",
            "payload.sessions[0].updatedAt",
            "payload.sessions[0].hasActiveRun",
            "payload.sessions[0].activeRunIds",
        ],
    )
    assert ours["payload"]["sessions"][0]["key"] == "agent:main:main"
    assert ours["payload"]["sessions"][0]["messageCount"] == 4

    history = await replay(server, "call-chat.history")
    ours, _ = check_call(
        history,
        "chat.history",
        [
            "payload.sessionKey",
            "payload.hasMore",
            "payload.totalMessages",
            "payload.messages[0].role",
            "payload.messages[0].content",
            "payload.messages[0].timestamp",
            "payload.messages[1].content[0].type",
            "payload.messages[1].content[0].text",
            "payload.messages[1].usage",
            "payload.messages[3].openclawAbort.aborted",
            "payload.messages[3].content[0].text",
        ],
    )
    messages = ours["payload"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[3]["aborted"] is True and "aborted" not in messages[1]


async def test_unknown_method_and_bad_token_as_recorded(server: Server) -> None:
    session = await replay(server, "x5-unknown-method")
    ours, recorded = check_call(session, "no.such.method", ["error.code", "error.message"])
    assert ours["error"] == recorded["error"]

    session = await replay(server, "x6-bad-token")
    ours, recorded = check_call(
        session, "connect", ["error.code", "error.message", "error.details.code"]
    )
    assert ours["error"]["message"] == recorded["error"]["message"]
    assert ours["error"]["details"]["code"] == "AUTH_TOKEN_MISMATCH"
