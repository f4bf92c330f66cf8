"""Items ↔ chat messages, without sockets."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.responses.items import IMAGE_OUTPUT, has_user_input, to_messages
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


def test_image_outputs_follow_the_run_of_tool_messages() -> None:
    """Codex's ``view_image`` answers with an image part: chat ``tool`` messages carry text
    only, so the images come after every output of the assistant's calls, in a user message."""
    image = "data:image/png;base64,iVBORw0KGgo="
    given = items(
        [
            {"type": "function_call", "call_id": "c1", "name": "view_image", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "exec", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_image", "image_url": image, "detail": "high"}],
            },
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [
                    {"type": "input_text", "text": "a chart"},
                    {"type": "input_image", "image_url": image},
                ],
            },
            {"role": "user", "content": "and now?"},
        ]
    )
    assert given[2]["output"] == [{"type": "input_image", "image_url": image, "detail": "high"}]
    _, out1, out2, images, user = to_messages(given).messages
    assert out1 == {"role": "tool", "tool_call_id": "c1", "content": IMAGE_OUTPUT}
    assert out2 == {"role": "tool", "tool_call_id": "c2", "content": "a chart"}
    assert images == {
        "role": "user",
        "content": [
            {"type": "text", "text": "Image output of tool call c1:"},
            {"type": "image_url", "image_url": {"url": image, "detail": "high"}},
            {"type": "text", "text": "Image output of tool call c2:"},
            {"type": "image_url", "image_url": {"url": image}},
        ],
    }
    assert user == {"role": "user", "content": "and now?"}
    # Last in the input, the images end the conversation.
    *_, last = to_messages(given[:3]).messages
    assert last["role"] == "user" and last["content"][1]["type"] == "image_url"  # type: ignore[index]


def test_image_outputs_follow_the_image_rules() -> None:
    output = [{"type": "input_image", "image_url": "https://example.com/a.png"}]
    with pytest.raises(InvalidRequest) as caught:
        items([{"type": "function_call_output", "call_id": "c", "output": output}])
    assert caught.value.message.startswith("`input[0].output[0]`: remote image URLs")


def test_what_counts_as_user_input() -> None:
    assert has_user_input(items("hi"))
    assert has_user_input(items([{"type": "function_call_output", "call_id": "c", "output": ""}]))
    assert not has_user_input(items([{"role": "assistant", "content": "x"}]))
    assert not has_user_input(items([{"role": "user", "content": " "}]))
