"""Responses API items, and the conversation they are to a run. Pure.

Items, as this gateway stores and echoes them::

    {"type": "message", "id": "msg_…", "role": "user"|"assistant"|"system"|"developer",
     "content": [{"type": "input_text", "text"} | {"type": "input_image", "image_url"}
                 | {"type": "output_text", "text", "annotations": []}], "status": "completed"}
    {"type": "function_call", "id": "fc_…", "call_id", "name", "arguments", "status"}
    {"type": "function_call_output", "id": "fco_…", "call_id",
     "output": "…" | [{"type": "input_text", "text"} | {"type": "input_image", "image_url"}, ...]}
    {"type": "reasoning", "id": "rs_…", ...}     kept for the echo, never sent to a model

A run speaks OpenAI chat messages (``gateway.types.ChatMessage``): ``to_messages`` turns items into
them (system and developer text apart, function calls into an assistant message's ``tool_calls``,
outputs into ``tool`` messages); ``gateway.responses.stream`` turns a run's events back into
items. A chat ``tool`` message carries text only, so the images of function outputs follow the
outputs in one ``user`` message (after the last of a run of outputs: an assistant's calls must be
answered by tool messages before anything else).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.types import ChatMessage, JSONObject, ToolCall

# The text of a tool message whose function output is images only (they follow it).
IMAGE_OUTPUT = "(The output is an image, given in the next message.)"


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True, slots=True)
class Conversation:
    """Items as a run takes them: ``system`` text (joined) and the other messages."""

    system: str | None
    messages: list[ChatMessage]


def to_messages(items: Iterable[JSONObject]) -> Conversation:
    """The chat messages of ``items`` (``item_reference`` items must be resolved first)."""
    system: list[str] = []
    messages: list[ChatMessage] = []
    images: list[JSONObject] = []  # of the latest run of function outputs, labelled
    for item in items:
        kind = item.get("type")
        if images and kind in ("message", "function_call"):
            messages.append(_images_message(images))
            images = []
        if kind == "message":
            role = item["role"]
            if role in ("system", "developer"):
                text = _text(item["content"])
                if text.strip():
                    system.append(text)
            elif role == "assistant":
                messages.append({"role": "assistant", "content": _text(item["content"])})
            else:
                messages.append({"role": "user", "content": _user_content(item["content"])})
        elif kind == "function_call":
            call: ToolCall = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if last["content"] == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item["output"]
            content = output
            if not isinstance(output, str):
                content = _text(output) or IMAGE_OUTPUT
                label = f"Image output of tool call {item['call_id']}:"
                images.append({"type": "input_text", "text": label})
                images.extend(part for part in output if part["type"] == "input_image")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
    if images:
        messages.append(_images_message(images))
    return Conversation("\n\n".join(system) or None, messages)


def has_user_input(items: Iterable[JSONObject]) -> bool:
    """Whether the items give the model something to answer: user text or an image, or the
    output of a function call."""
    for item in items:
        if item.get("type") == "function_call_output":
            return True
        if item.get("type") == "message" and item.get("role") == "user":
            for part in item["content"]:
                if part["type"] == "input_image" or part.get("text", "").strip():
                    return True
    return False


def message_item(item_id: str, text: str | None, status: str) -> JSONObject:
    """An assistant message item (``text`` ``None``: not started, no content part yet)."""
    content = [] if text is None else [output_text(text)]
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def output_text(text: str) -> JSONObject:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str
) -> JSONObject:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _text(content: list[JSONObject]) -> str:
    return "".join(part.get("text", "") for part in content if "text" in part)


def _images_message(parts: list[JSONObject]) -> ChatMessage:
    return {"role": "user", "content": _user_content(parts)}


def _user_content(content: list[JSONObject]) -> str | list[JSONObject]:
    """A user message's content: its text, or chat content parts when it has images."""
    if all(part["type"] != "input_image" for part in content):
        return _text(content)
    parts: list[JSONObject] = []
    for part in content:
        if part["type"] == "input_image":
            image: JSONObject = {"url": part["image_url"]}
            if "detail" in part:
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            parts.append({"type": "text", "text": part.get("text", "")})
    return parts
