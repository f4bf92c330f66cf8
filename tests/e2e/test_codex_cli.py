"""The real Codex CLI (npm ``@openai/codex@0.171.0``) against the gateway's ``/v1/responses``.

Codex → gateway (Responses API on) → fake upstream (OpenAI chat completions), all on loopback.
Codex is configured with the gateway as a custom model provider (``tests.codex_cli``) and runs
non-interactively: ``codex exec``. Select with ``-m codex_cli`` (deselect with
``-m 'not codex_cli'``). The first run installs Codex into ``.cache/codex-cli`` (about ten
seconds); without a package registry these tests are skipped, saying so. Each Codex run takes
under a second.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from struct import pack
from typing import Any

import pytest
import trio

from gateway.responses.items import IMAGE_OUTPUT
from gateway.testing import FakeToolCall, FakeUpstream, Script, open_fake_upstream
from tests.codex_cli import CliResult, CodexCli, Unavailable, install
from tests.harness import TOKEN, Server, start_server

pytestmark = pytest.mark.codex_cli

# A Codex run takes under a second; this is for a slow, busy machine.
CLI_SECONDS = 60
# ``--ephemeral``: no session files; the sandbox is Codex's business, not the gateway's: the
# commands are the test's own, in a temporary directory, so none (a sandbox needs user
# namespaces, which a CI container may not have).
EXEC = ["exec", "--skip-git-repo-check", "--ephemeral", "--color", "never"]
EXEC += ["--sandbox", "danger-full-access"]


@pytest.fixture(scope="session")
def codex_cli() -> CodexCli:
    try:
        return install()
    except Unavailable as error:
        pytest.skip(f"the Codex CLI could not be installed (no package registry?): {error}")


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream() as upstream:
        yield upstream


async def serve(nursery: trio.Nursery, up: FakeUpstream) -> Server:
    return await start_server(
        nursery,
        {
            "gateway": {"http": {"endpoints": {"responses": {"enabled": True}}}},
            "models": {"providers": {"fake": {"baseUrl": up.base_url}}},
            "agents": {"defaults": {"model": "fake/m"}},
        },
    )


async def codex(
    cli: CodexCli, server: Server, tmp_path: Path, prompt: str
) -> tuple[CliResult, Path]:
    """Run ``codex exec PROMPT`` in a fresh working directory against ``server``."""
    env = cli.home(tmp_path / "home", int(server.url.rsplit(":", 1)[1]), TOKEN)
    work = tmp_path / "work"
    work.mkdir()
    with trio.fail_after(CLI_SECONDS):
        return await cli.run([*EXEC, prompt], env, work), work


def tool(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The function tool ``name`` as the gateway offered it upstream."""
    found: list[dict[str, Any]] = [t["function"] for t in body["tools"]]
    [named] = [f for f in found if f["name"] == name]
    return named


def call(name: str, arguments: dict[str, Any]) -> Script:
    return Script(tokens=0, tool_calls=(FakeToolCall(name, json.dumps(arguments), "call_1"),))


async def test_exec_prints_the_answer(
    nursery: trio.Nursery, tmp_path: Path, up: FakeUpstream, codex_cli: CodexCli
) -> None:
    server = await serve(nursery, up)
    up.enqueue(Script(text="Hello from the gateway, via Codex."))

    result, _ = await codex(codex_cli, server, tmp_path, "Say hello.")

    assert result.returncode == 0, result.output
    assert result.stdout.strip() == "Hello from the gateway, via Codex.", result.output
    [request] = up.requests
    assert request.path == "/v1/chat/completions" and request.body["stream"] is True
    messages = request.body["messages"]
    assert messages[0]["role"] == "system" and "Codex" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "Say hello."}


async def test_shell_tool_round_trip(
    nursery: trio.Nursery, tmp_path: Path, up: FakeUpstream, codex_cli: CodexCli
) -> None:
    """The model asks for Codex's shell tool (``exec_command``, ``{"cmd": ...}``); Codex runs
    the command and sends its output back; the model's answer is printed."""
    server = await serve(nursery, up)
    command = "echo codex-was-here | tee marker.txt"
    up.enqueue(call("exec_command", {"cmd": command}), Script(text="The marker is written."))

    result, work = await codex(codex_cli, server, tmp_path, "Write the marker.")

    first, second = up.requests
    assert tool(first.body, "exec_command")["parameters"]["required"] == ["cmd"]
    assert result.returncode == 0, result.output
    assert (work / "marker.txt").read_text() == "codex-was-here\n"
    *_, asked, answered = second.body["messages"]
    assert asked["role"] == "assistant"
    assert asked["tool_calls"][0]["function"] == {
        "name": "exec_command",
        "arguments": json.dumps({"cmd": command}),
    }
    assert answered["role"] == "tool" and answered["tool_call_id"] == "call_1"
    assert "codex-was-here" in answered["content"]
    assert result.stdout.strip() == "The marker is written.", result.output


async def test_image_tool_output_reaches_the_model(
    nursery: trio.Nursery, tmp_path: Path, up: FakeUpstream, codex_cli: CodexCli
) -> None:
    """Codex's ``view_image`` returns the image as a content part of the function output; the
    model gets it after the tool message, as a user message's image."""
    server = await serve(nursery, up)
    image = tmp_path / "red.png"
    image.write_bytes(_png(4, 4))
    up.enqueue(call("view_image", {"path": str(image)}), Script(text="It is red."))

    result, _ = await codex(codex_cli, server, tmp_path, "What colour is red.png?")

    assert result.returncode == 0, result.output
    assert result.stdout.strip() == "It is red.", result.output
    *_, answered, shown = up.requests[1].body["messages"]
    assert answered == {"role": "tool", "tool_call_id": "call_1", "content": IMAGE_OUTPUT}
    assert shown["role"] == "user"
    label, picture = shown["content"]
    assert label == {"type": "text", "text": "Image output of tool call call_1:"}
    url = picture["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")


def _png(width: int, height: int) -> bytes:
    """A red RGB PNG."""
    rows = b"".join(b"\0" + b"\xff\0\0" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return pack(">I", len(data)) + kind + data + pack(">I", zlib.crc32(kind + data))

    header = pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body
