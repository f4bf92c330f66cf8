"""``bench.overhead``'s pure parts: finding the first content token of either stream shape, and
judging the Responses / chat goal from a result document."""

from __future__ import annotations

from typing import Any

import pytest

from bench._overhead_report import GOAL_RESPONSES_RATIO, responses_vs_chat
from bench.client import CONTENT

CHAT_ROLE = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
CHAT_TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":"w0"},"finish_reason":null}]}\n\n'
FAKE_TOKEN = b'data: {"choices": [{"index": 0, "delta": {"content": "w0"}}]}\n\n'
RESPONSES_OPENING = (
    b"event: response.created\n"
    b'data: {"type":"response.created","sequence_number":0,"response":{"id":"resp_1",'
    b'"instructions":null,"output":[],"text":{"format":{"type":"text"}}}}\n\n'
    b"event: response.output_item.added\n"
    b'data: {"type":"response.output_item.added","sequence_number":1,"output_index":0,'
    b'"item":{"type":"message","id":"msg_1","role":"assistant","content":[]}}\n\n'
    b"event: response.content_part.added\n"
    b'data: {"type":"response.content_part.added","sequence_number":2,"item_id":"msg_1",'
    b'"part":{"type":"output_text","text":"","annotations":[]}}\n\n'
)
RESPONSES_DELTA = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","sequence_number":3,"item_id":"msg_1",'
    b'"output_index":0,"content_index":0,"delta":"w0","logprobs":[]}\n\n'
)


@pytest.mark.parametrize("token", [CHAT_TOKEN, FAKE_TOKEN, RESPONSES_DELTA])
def test_content_finds_the_first_token_of_either_shape(token: bytes) -> None:
    assert CONTENT.search(token) is not None


@pytest.mark.parametrize(
    "before",
    [CHAT_ROLE, RESPONSES_OPENING, RESPONSES_DELTA.replace(b'"delta":"w0"', b'"delta":""')],
)
def test_content_skips_what_comes_before_the_first_token(before: bytes) -> None:
    assert CONTENT.search(before) is None


def _result(
    chat_cpu: float, responses_cpu: float, chat_token: float, responses_token: float
) -> dict[str, Any]:
    added = {"ttft_p50_ms": 2.0, "ttft_p99_ms": 4.0, "total_p50_ms": 2.0, "total_p99_ms": 4.0}

    def entry() -> dict[str, Any]:
        return {
            "added": added,
            "responses_added": {**added, "ttft_p50_ms": 2.2},
            "gateway_cpu_ms_per_request": chat_cpu,
            "responses_cpu_ms_per_request": responses_cpu,
        }

    long = {
        "added_per_token_ms": 0.002,
        "responses_added_per_token_ms": 0.003,
        "gateway_cpu_per_token_ms": chat_token,
        "responses_cpu_per_token_ms": responses_token,
    }
    return {"short": {"16": entry(), "1": entry()}, "long": long}


def test_the_goal_is_judged_on_cpu_per_request_at_the_lowest_c_and_per_token() -> None:
    met = responses_vs_chat(_result(2.0, 2.1, 0.020, 0.021))
    assert met is not None
    assert met["goal"]["basis"] == "gateway CPU"
    assert met["goal"]["at_concurrency"] == "1"
    assert met["goal"]["per_request"] == pytest.approx(1.05)
    assert met["goal"]["met"] is True
    assert met["concurrency"]["1"]["added_ttft_p50_ratio"] == pytest.approx(1.1)
    over = responses_vs_chat(_result(2.0, 2.0 * GOAL_RESPONSES_RATIO + 0.01, 0.020, 0.020))
    assert over is not None and over["goal"]["met"] is False
    over_per_token = responses_vs_chat(_result(2.0, 2.0, 0.020, 0.025))
    assert over_per_token is not None and over_per_token["goal"]["met"] is False


def test_without_the_gateways_cpu_the_goal_falls_back_to_the_added_times() -> None:
    result = _result(2.0, 2.0, 0.020, 0.020)
    for entry in result["short"].values():
        entry.pop("gateway_cpu_ms_per_request")
        entry.pop("responses_cpu_ms_per_request")
    del result["long"]["gateway_cpu_per_token_ms"], result["long"]["responses_cpu_per_token_ms"]
    judged = responses_vs_chat(result)
    assert judged is not None
    assert judged["goal"]["basis"] == "added time"
    assert judged["goal"]["per_token"] == pytest.approx(1.5)
    assert judged["goal"]["met"] is False


def test_a_result_without_the_responses_path_has_no_comparison() -> None:
    result = _result(2.0, 2.0, 0.020, 0.020)
    for entry in result["short"].values():
        del entry["responses_added"]
    assert responses_vs_chat(result) is None
