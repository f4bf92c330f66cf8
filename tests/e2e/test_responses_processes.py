"""Stored responses as real processes see them: shared by the workers of one state directory and
kept across a restart."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx

from tests.e2e.test_serve import wait_exit
from tests.processes import BIN, free_port, process, wait_healthy

TOKEN = "resp-token"


def config(tmp_path: Path) -> Path:
    path = tmp_path / "gw.json"
    path.write_text(
        json.dumps(
            {
                "gateway": {
                    "auth": {"token": TOKEN},
                    "http": {"endpoints": {"responses": {"enabled": True}}},
                }
            }
        )
    )
    return path


async def test_stored_responses_across_workers_and_a_restart(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(BIN / "gateway"), "serve", "--config", str(config(tmp_path)), "--port", str(port)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with process([*args, "--workers", "2"], tmp_path) as proc:
        await wait_healthy(url, proc)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=20) as http:
            ids = []
            previous = None
            for n in range(8):
                body = {"input": f"turn {n}", "previous_response_id": previous}
                answer = await http.post("/v1/responses", json=body)
                assert answer.status_code == 200, answer.text
                previous = answer.json()["id"]
                ids.append(previous)
            # Whichever worker answers (one socket, two processes), every response is there.
            for response_id in ids * 3:
                got = await http.get(f"/v1/responses/{response_id}")
                assert got.status_code == 200, got.text
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, 10) == 0
    with process(args, tmp_path, "second.log") as proc:
        await wait_healthy(url, proc)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=20) as http:
            last = (await http.get(f"/v1/responses/{ids[-1]}")).json()
            assert last["output"][0]["content"][0]["text"] == "turn 7"
            # The chain goes on after the restart (the echo model says the last user text).
            more = await http.post(
                "/v1/responses", json={"input": "after", "previous_response_id": ids[-1]}
            )
            assert more.status_code == 200
            items = (await http.get(f"/v1/responses/{ids[0]}/input_items")).json()
            assert [i["content"][0]["text"] for i in items["data"]] == ["turn 0"]
        proc.send_signal(signal.SIGTERM)
        assert await wait_exit(proc, 10) == 0
