"""Items ↔ chat messages, without sockets."""

from __future__ import annotations

from gateway.agents.reply import Reply
from gateway.providers.events import Finish, TextDelta, ToolCallDelta
from gateway.responses.items import has_user_input, output_items, to_messages
from gateway.responses.request import parse_responses_request


def items(raw: object) -> list:
    return parse_responses_request({"input": raw}).input


def test_messages_system_calls_and_outputs() -> None:
    conversation = to_messages(
        items(
            [
                {"role": "developer", "content": "Be terse."},
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Let me see."}]},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {
                    "type": "function_call_output",
                    "call_id": "c2",
                    "output": [{"type": "input_text", "text": "dry"}],
                },
                {"type": "reasoning", "summary": []},
            ]
        )
    )
    assert conversation.system == "Be terse."
    user, assistant, out1, out2 = conversation.messages
    assert user == {"role": "user", "content": "Weather?"}
    assert assistant["content"] == "Let me see."
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert out1 == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert out2["content"] == "dry"


def test_a_call_without_text_before_it_opens_an_assistant_message() -> None:
    [message] = to_messages(
        items([{"type": "function_call", "call_id": "c", "name": "n", "arguments": "{}"}])
    ).messages
    assert message["role"] == "assistant" and message["content"] is None


def test_images_become_chat_parts() -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    parts = [
        {"type": "input_text", "text": "what?"},
        {"type": "input_image", "image_url": image, "detail": "low"},
    ]
    [message] = to_messages(items([{"role": "user", "content": parts}])).messages
    assert message["content"] == [
        {"type": "text", "text": "what?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
    ]


def test_what_counts_as_user_input() -> None:
    assert has_user_input(items("hi"))
    assert has_user_input(items([{"type": "function_call_output", "call_id": "c", "output": ""}]))
    assert not has_user_input(items([{"role": "assistant", "content": "x"}]))
    assert not has_user_input(items([{"role": "user", "content": " "}]))


def test_output_items_text_then_calls() -> None:
    reply = Reply()
    for event in (
        TextDelta("Hi "),
        TextDelta("there"),
        ToolCallDelta(0, "", id="call_a", name="f"),
        ToolCallDelta(0, '{"x":1}'),
        Finish("tool_calls"),
    ):
        reply.add(event)
    message, call = output_items(reply, "msg_1", {0: "fc_1"})
    assert message["id"] == "msg_1" and message["content"][0]["text"] == "Hi there"
    assert call == {
        "type": "function_call", "id": "fc_1", "call_id": "call_a", "name": "f",
        "arguments": '{"x":1}', "status": "completed",
    }  # fmt: skip
    assert [i["type"] for i in output_items(Reply(), "m", {})] == ["message"]
