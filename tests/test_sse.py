from __future__ import annotations

import json

from gateway.agents.events import Finish, RunFailed, TextDelta, ToolCallDelta, Usage
from gateway.errors import GatewayError
from gateway.sse import DONE, PING, ChunkEncoder


def decode(chunk: bytes) -> object:
    assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
    return json.loads(chunk[6:-2])


ENC = ChunkEncoder("chatcmpl_1", 1700000000, "openclaw")
HEAD = {
    "id": "chatcmpl_1",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "openclaw",
}


def test_role_content_and_finish_chunks() -> None:
    assert decode(ENC.role()) == {
        **HEAD,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
    }
    assert decode(ENC.encode(TextDelta('héllo "\n'))) == {
        **HEAD,
        "choices": [{"index": 0, "delta": {"content": 'héllo "\n'}, "finish_reason": None}],
    }
    assert decode(ENC.encode(Finish("length"))) == {
        **HEAD,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
    }


def test_tool_call_chunks() -> None:
    first = decode(ENC.encode(ToolCallDelta(0, "", id="call_1", name="lookup")))
    assert first["choices"][0]["delta"] == {  # type: ignore[index]
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "lookup", "arguments": ""},
            }
        ]
    }
    more = decode(ENC.encode(ToolCallDelta(0, '{"q":')))
    assert more["choices"][0]["delta"] == {  # type: ignore[index]
        "tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]
    }


def test_usage_error_and_constants() -> None:
    assert ENC.encode(Usage(1, 2)) == b""
    assert decode(ENC.usage(Usage(3, 4))) == {
        **HEAD,
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    error = GatewayError("upstream died", status=502, type_="upstream_error", code="upstream")
    assert decode(ENC.encode(RunFailed(error))) == {
        "error": {
            "message": "upstream died",
            "type": "upstream_error",
            "param": None,
            "code": "upstream",
        }
    }
    assert DONE == b"data: [DONE]\n\n"
    assert PING == b": ping\n\n"
