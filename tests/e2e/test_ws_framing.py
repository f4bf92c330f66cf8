"""Frames that break the WebSocket framing end with a close frame, then EOF (RFC 6455 7.1.7).

Each broken frame is sent on a raw socket before the OpenClaw ``connect`` request and after a
successful handshake, against the in-process server and against real ``hypercorn -k trio
gateway.app:app`` and ``gateway serve`` processes. The client does not answer the close: the
server must close the TCP connection on its own. A message over Hypercorn's
``websocket_max_message_size`` is closed 1009 by Hypercorn, which then waits for the client's
close (a normal closing handshake).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from wsproto.events import CloseConnection

from tests.harness import TOKEN, start_server
from tests.processes import BIN, free_port, process, wait_healthy
from tests.ws.wsclient import BROKEN_FRAMES, Operator, WsClient

Opener = Callable[[str], Awaitable[WsClient]]


async def before_connect(url: str) -> WsClient:
    ws = await WsClient.connect(url)
    challenge = await ws.receive_json()
    assert challenge["event"] == "connect.challenge"
    return ws


async def after_hello(url: str) -> WsClient:
    return (await Operator.open(url, token=TOKEN)).ws


PHASES: dict[str, Opener] = {"before connect": before_connect, "after hello-ok": after_hello}


async def close_code_then_eof(ws: WsClient, *, answer: bool = False) -> int | None:
    """Read until the server closes the TCP connection; the code of the close frame that came
    before EOF (``None`` when none did). With ``answer``, echo that close like a client that
    completes the closing handshake."""
    code = None
    with trio.fail_after(5):
        while True:
            data = await ws.stream.receive_some(65536)
            if not data:
                await ws.stream.aclose()
                return code
            ws.conn.receive_data(data)
            for event in ws.conn.events():
                if isinstance(event, CloseConnection) and code is None:
                    code = event.code
                    if answer:
                        await ws.stream.send_all(ws.conn.send(event.response()))


async def check_broken_frames(url: str) -> None:
    """Every broken frame in every phase: the close code it calls for, then EOF."""
    for phase, open_ws in PHASES.items():
        for name, (raw, expected) in BROKEN_FRAMES.items():
            ws = await open_ws(url)
            await ws.stream.send_all(raw)
            assert await close_code_then_eof(ws) == expected, (phase, name)


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("broken", BROKEN_FRAMES)
async def test_broken_frame_gets_close_frame_then_eof(
    nursery: trio.Nursery, phase: str, broken: str
) -> None:
    server = await start_server(nursery)
    raw, expected = BROKEN_FRAMES[broken]
    ws = await PHASES[phase](server.url)
    await ws.stream.send_all(raw)
    assert await close_code_then_eof(ws) == expected
    # The server is fine: a new connection completes its handshake.
    operator = await Operator.open(server.url)
    assert (await operator.ws.send_close()).code is None


@pytest.mark.parametrize("phase", PHASES)
async def test_message_over_hypercorn_limit_gets_1009(nursery: trio.Nursery, phase: str) -> None:
    server = await start_server(nursery, hypercorn_options={"websocket_max_message_size": 1024})
    ws = await PHASES[phase](server.url)
    await ws.send_text("x" * 2000)
    assert await close_code_then_eof(ws, answer=True) == 1009


CONFIG = '{gateway: {auth: {token: "${GW_TEST_TOKEN}"}}}'


@pytest.mark.parametrize("launcher", ["hypercorn", "gateway serve"])
async def test_broken_frames_on_real_processes(tmp_path: Path, launcher: str) -> None:
    config = tmp_path / "openclaw.json5"
    config.write_text(CONFIG)
    port = free_port()
    if launcher == "hypercorn":
        args = [str(BIN / "hypercorn"), "-k", "trio", "--bind", f"127.0.0.1:{port}"]
        args.append("gateway.app:app")
    else:
        args = [str(BIN / "gateway"), "serve", "--config", str(config), "--port", str(port)]
    env = {"OPENCLAW_CONFIG_PATH": str(config), "GW_TEST_TOKEN": TOKEN}
    url = f"http://127.0.0.1:{port}"
    with process(args, tmp_path, **env) as proc:
        await wait_healthy(url, proc)
        await check_broken_frames(url)
