"""Pure agent logic: routing, prompt assembly, reply accumulation."""

from __future__ import annotations

import pytest

from gateway.agents.events import Finish, RunFailed, TextDelta, ToolCallDelta, Usage
from gateway.agents.prompt import assemble, new_turn, system_prompt
from gateway.agents.reply import Reply
from gateway.agents.routing import agent_id_from_model, resolve_agent, resolve_session
from gateway.errors import GatewayError, InvalidRequest
from gateway.settings import AgentSettings, AgentsSettings
from gateway.types import ChatMessage

AGENTS = AgentsSettings(agents=(AgentSettings("main"), AgentSettings("ops")), default_id="main")


@pytest.mark.parametrize(
    ("model", "agent"),
    [
        ("openclaw", None),
        ("OPENCLAW/DEFAULT", None),
        ("", None),
        ("openclaw:Ops", "ops"),
        ("openclaw/ops", "ops"),
        ("agent:ops", "ops"),
    ],
)
def test_agent_id_from_model(model: str, agent: str | None) -> None:
    assert agent_id_from_model(model) == agent


@pytest.mark.parametrize("model", ["gpt-4o", "openclaw:", "agent:", "claw/ops"])
def test_invalid_model(model: str) -> None:
    with pytest.raises(InvalidRequest, match="Invalid `model`"):
        agent_id_from_model(model)


def test_resolve_agent() -> None:
    assert resolve_agent(AGENTS, None, "openclaw").id == "main"
    assert resolve_agent(AGENTS, " OPS ", "openclaw:main").id == "ops"
    assert resolve_agent(AGENTS, "", "openclaw/ops").id == "ops"
    with pytest.raises(InvalidRequest, match=r"^Unknown agent 'nope'\.$"):
        resolve_agent(AGENTS, None, "openclaw/nope")


def test_resolve_session() -> None:
    assert resolve_session("main", "  k1 ", "bob") == resolve_session("main", "k1", None)
    assert resolve_session("main", "k1", None).stateful
    user = resolve_session("ops", None, "Bob")
    assert (user.key, user.stateful) == ("agent:ops:openai-user:bob", True)
    fresh = resolve_session("ops", "   ", None)
    assert fresh.key.startswith("agent:ops:openai:") and not fresh.stateful
    assert fresh.key != resolve_session("ops", None, None).key
    with pytest.raises(InvalidRequest):
        resolve_session("main", "Cron:x", None)


def test_system_prompt() -> None:
    assert system_prompt(None, None) is None
    assert system_prompt("agent", None) == "agent"
    assert system_prompt("agent", "client") == "agent\n\nclient"
    assert system_prompt("  ", "client") == "client"


U1: ChatMessage = {"role": "user", "content": "one"}
A1: ChatMessage = {"role": "assistant", "content": "reply"}
U2: ChatMessage = {"role": "user", "content": "two"}


def test_new_turn_and_assemble() -> None:
    assert new_turn([U1, A1, U2]) == [U2]
    assert new_turn([U1]) == [U1]
    assert new_turn([U1, A1]) == []
    stateless = assemble([U1, A1, U2], None)
    assert (stateless.messages, stateless.turn) == ([U1, A1, U2], [])
    resent = assemble([U1, A1, U2], [U1, A1])
    assert (resent.messages, resent.turn) == ([U1, A1, U2], [U2])
    adopted = assemble([U1, A1, U2], [])
    assert (adopted.messages, adopted.turn) == ([U1, A1, U2], [U1, A1, U2])


def test_reply_accumulates_text_tools_usage_and_errors() -> None:
    reply = Reply()
    for event in (
        TextDelta("Hel"),
        TextDelta("lo"),
        ToolCallDelta(1, "", id="b", name="g"),
        ToolCallDelta(0, "", id="a", name="f"),
        ToolCallDelta(0, '{"x"'),
        ToolCallDelta(0, ":1}"),
        Usage(5, 6),
        Finish("tool_calls"),
    ):
        reply.add(event)
    assert reply.text == "Hello" and reply.has_output
    assert reply.message() == {
        "role": "assistant",
        "content": "Hello",
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
            {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
        ],
    }
    assert (reply.finish_reason, reply.usage) == ("tool_calls", Usage(5, 6))
    only_tools = Reply()
    only_tools.add(ToolCallDelta(0, "{}", id="a", name="f"))
    assert only_tools.message()["content"] is None
    failed = Reply()
    failed.add(RunFailed(GatewayError("x")))
    assert failed.error is not None and not failed.has_output
    assert failed.message() == {"role": "assistant", "content": ""}
