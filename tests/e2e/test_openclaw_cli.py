"""The real ``openclaw`` CLI (npm ``openclaw@2026.9.6``, on Node.js 24) against the gateway.

Select with ``-m openclaw_cli`` (deselect with ``-m 'not openclaw_cli'``). The first run installs
the CLI into ``.cache/openclaw-cli`` (about a minute); without a package registry these tests
are skipped, saying so. Each CLI run takes one to three seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import trio

from gateway.sessions.sqlite import SQLiteTranscripts
from tests.harness import AUTH, TOKEN, Server, start_server
from tests.openclaw_cli import CliResult, OpenClawCli, Unavailable, install

pytestmark = pytest.mark.openclaw_cli

# A CLI run takes one to three seconds; this is for a slow, busy machine.
CLI_SECONDS = 60


@pytest.fixture(scope="session")
def openclaw_cli() -> OpenClawCli:
    try:
        return install()
    except Unavailable as error:
        pytest.skip(f"the openclaw CLI could not be installed (no package registry?): {error}")


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


async def run(cli: OpenClawCli, args: list[str], env: dict[str, str], home: Path) -> CliResult:
    with trio.fail_after(CLI_SECONDS):
        return await cli.run(args, env, home)


async def test_health(nursery: trio.Nursery, tmp_path: Path, openclaw_cli: OpenClawCli) -> None:
    store = SQLiteTranscripts(tmp_path / "gateway")
    server = await start_server(nursery, store=store)
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=20) as client:
        body = {"model": "openclaw", "user": "cli", "messages": [{"role": "user", "content": "hi"}]}
        assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    env = openclaw_cli.home(tmp_path / "home", port_of(server), TOKEN)

    result = await run(openclaw_cli, ["health"], env, tmp_path / "home")

    assert result.returncode == 0, result.output
    lines = result.stdout.splitlines()
    assert "Agents: main (default)" in lines, result.output
    assert "Heartbeat interval: disabled (main)" in lines
    assert f"Session store (main): {store.location} (1 entries)" in lines
    assert any(re.fullmatch(r"- agent:main:openai-user:cli \(\d+m ago\)", x) for x in lines)
    assert any(line.startswith("Gateway probe duration: ") for line in lines)


async def test_wrong_token(
    nursery: trio.Nursery, tmp_path: Path, openclaw_cli: OpenClawCli
) -> None:
    """The connect error reaches the CLI before the close (not only "gateway closed (1008)")."""
    server = await start_server(nursery)
    env = openclaw_cli.home(tmp_path / "home", port_of(server), TOKEN)
    call = ["gateway", "call", "health", "--token", "WRONG"]

    as_json = await run(openclaw_cli, [*call, "--json"], env, tmp_path / "home")
    as_text = await run(openclaw_cli, call, env, tmp_path / "home")

    assert as_json.returncode == 1, as_json.output
    error = json.loads(as_json.stdout)["error"]
    assert error["type"] == "gateway_request_error", as_json.output
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    assert as_text.returncode == 1, as_text.output
    text = as_text.stdout + as_text.stderr
    assert "Gateway call failed: unauthorized: gateway token mismatch" in text, as_text.output
    assert "gateway closed (1008)" not in text


async def test_status_json(
    nursery: trio.Nursery, tmp_path: Path, openclaw_cli: OpenClawCli
) -> None:
    store = SQLiteTranscripts(tmp_path / "gateway")
    server = await start_server(nursery, store=store)
    env = openclaw_cli.home(tmp_path / "home", port_of(server), TOKEN)

    result = await run(openclaw_cli, ["status", "--json"], env, tmp_path / "home")

    assert result.returncode == 0, result.output
    status = json.loads(result.stdout)
    assert status["version"] == server.gateway.ws.version
    [main] = status["agents"]["agents"]
    assert (main["id"], main["sessionsPath"], main["sessionsCount"]) == ("main", store.location, 0)
    assert status["sessions"]["byAgent"][0]["agentId"] == "main"
