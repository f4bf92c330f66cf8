"""Launching as users do: ``hypercorn -k trio gateway.app:app`` and ``gateway serve``, as real
processes."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import httpx

from tests.processes import BIN, free_port, process, wait_healthy

CONFIG = """
// JSON5, as users write it
{
  gateway: {
    auth: { token: "${GW_TEST_TOKEN}" },
    http: { endpoints: { chatCompletions: { enabled: true } } },
  },
}
"""


async def complete(url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {token}"},
            json={"model": "openclaw", "messages": [{"role": "user", "content": "hi there"}]},
        )


async def test_hypercorn_trio_worker_serves(tmp_path: Path) -> None:
    (tmp_path / "openclaw.json").write_text(CONFIG)
    port = free_port()
    args = [str(BIN / "hypercorn"), "-k", "trio", "--bind", f"127.0.0.1:{port}", "gateway.app:app"]
    env = {"OPENCLAW_CONFIG_PATH": str(tmp_path / "openclaw.json"), "GW_TEST_TOKEN": "tok"}
    with process(args, tmp_path, **env) as proc:
        await wait_healthy(f"http://127.0.0.1:{port}", proc)
        response = await complete(f"http://127.0.0.1:{port}", "tok")
        assert response.status_code == 200
        assert response.json()["choices"][0]["message"]["content"] == "hi there"


def test_hypercorn_without_trio_worker_fails_at_startup(tmp_path: Path) -> None:
    args = [str(BIN / "hypercorn"), "--bind", f"127.0.0.1:{free_port()}", "gateway.app:app"]
    with process(args, tmp_path) as proc:
        proc.wait(timeout=20)
    output = (tmp_path / "stderr.log").read_text()
    assert "gateway: cannot start: Gateway needs Hypercorn's trio worker" in output
    assert "-k trio" in output


def test_hypercorn_with_bad_config_fails_at_startup(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json5"
    bad.write_text('{gateway: {auth: {mode: "tokn"}}}')
    args = [
        str(BIN / "hypercorn"),
        "-k",
        "trio",
        "--bind",
        f"127.0.0.1:{free_port()}",
        "gateway.app:app",
    ]
    with process(args, tmp_path, OPENCLAW_CONFIG_PATH=str(bad)) as proc:
        proc.wait(timeout=20)
    output = (tmp_path / "stderr.log").read_text()
    assert (
        f"gateway: cannot start: {bad}: gateway.auth.mode: "
        'expected one of token|password|none, got "tokn"' in output
    )


async def test_gateway_serve_and_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "gw.json5"
    config.write_text(CONFIG)
    port = free_port()
    args = [str(BIN / "gateway"), "serve", "--config", str(config), "--port", str(port)]
    with process(args, tmp_path, GW_TEST_TOKEN="tok2") as proc:
        await wait_healthy(f"http://127.0.0.1:{port}", proc)
        assert (await complete(f"http://127.0.0.1:{port}", "tok2")).status_code == 200
        assert (await complete(f"http://127.0.0.1:{port}", "wrong")).status_code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


async def test_gateway_serve_workers_without_a_config_file(tmp_path: Path) -> None:
    """No file at the default path means all defaults, in every worker too."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    args = [str(BIN / "gateway"), "serve", "--workers", "2", "--port", str(port)]
    with process(args, tmp_path, HOME=str(home), OPENCLAW_CONFIG_PATH="") as proc:
        await wait_healthy(f"http://127.0.0.1:{port}", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert not (home / ".openclaw" / "openclaw.json").exists()


def test_gateway_serve_refuses_auth_none_beyond_loopback(tmp_path: Path) -> None:
    config = tmp_path / "gw.json5"
    config.write_text('{gateway: {auth: {mode: "none"}}}')
    args = [str(BIN / "gateway"), "serve", "--config", str(config), "--bind", "0.0.0.0"]
    with process(args, tmp_path) as proc:
        assert proc.wait(timeout=20) == 2
    assert (
        'refusing to listen on 0.0.0.0 with gateway.auth.mode "none"'
        in (tmp_path / "stderr.log").read_text()
    )


def test_gateway_serve_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [str(BIN / "gateway"), "serve", "--port", str(port)]
        with process(args, tmp_path) as proc:
            assert proc.wait(timeout=20) == 1
    output = (tmp_path / "stderr.log").read_text()
    assert f"gateway: cannot listen on 127.0.0.1:{port}: Address already in use" in output
    assert "Traceback" not in output


def test_gateway_serve_reports_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "gw.json5"
    config.write_text("{gateway: {port: 'x'}}")
    with process([str(BIN / "gateway"), "serve", "--config", str(config)], tmp_path) as proc:
        assert proc.wait(timeout=20) == 2
    assert (
        f'gateway: configuration error: {config}: gateway.port: expected an integer, got "x"'
        in (tmp_path / "stderr.log").read_text()
    )
