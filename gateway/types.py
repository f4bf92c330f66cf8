"""Type aliases and wire shapes (JSON documents as ``TypedDict``s). No logic lives here."""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypeAlias, TypedDict

JSONObject: TypeAlias = dict[str, Any]


class FunctionCall(TypedDict):
    name: str
    arguments: str


class ToolCall(TypedDict):
    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(TypedDict):
    """One message of a conversation, in the OpenAI Chat Completions shape.

    ``content`` is a string, a list of content parts (``{"type": "text", "text": ...}`` or
    ``{"type": "image_url", "image_url": {"url": "data:..."}}``) or ``None`` (an assistant
    message that only carries ``tool_calls``).
    """

    role: str
    content: str | list[JSONObject] | None
    name: NotRequired[str]
    tool_calls: NotRequired[list[ToolCall]]
    tool_call_id: NotRequired[str]


class UsageDict(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(TypedDict):
    error: ErrorDetail
