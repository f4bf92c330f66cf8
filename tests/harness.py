"""Starting the real server inside a test's nursery, and a provider that records what happens."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import hypercorn.trio
import trio
from hypercorn.config import Config

from gateway.agents.events import Finish, TextDelta, Usage
from gateway.app import Gateway, create_app
from gateway.config import parse_settings
from gateway.providers.base import Emit, ModelRequest, Provider, ProviderError
from gateway.providers.echo import EchoProvider
from gateway.providers.registry import ProviderRegistry
from gateway.sessions.admission import Admission, LocalAdmission
from gateway.sessions.base import TranscriptStore
from gateway.sessions.responses import ResponseStore
from tests.memory_store import MemoryResponses, MemoryStore

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def settings_from(
    config: Mapping[str, Any] | None = None, provider_ids: tuple[str, ...] = ()
) -> Any:
    """Settings with chat completions on and token auth, overlaid with ``config``.

    ``provider_ids`` are declared under ``models.providers`` so agents may name them; the
    test passes the provider objects themselves to ``create_app``.
    """
    declared = {
        pid: {"baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions"}
        for pid in provider_ids
    }
    base: dict[str, Any] = {
        "gateway": {
            "auth": {"mode": "token", "token": TOKEN},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
        },
        "models": {"providers": declared},
    }
    for key, value in (config or {}).items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = value
    return parse_settings(base, environ={})


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@dataclass
class Server:
    url: str
    gateway: Gateway
    stop: trio.Event


async def start_server(
    nursery: trio.Nursery,
    config: Mapping[str, Any] | None = None,
    *,
    providers: Mapping[str, Provider] | None = None,
    store: TranscriptStore | None = None,
    admission: Admission | None = None,
    responses: ResponseStore | None = None,
    hypercorn_options: Mapping[str, Any] | None = None,
) -> Server:
    """Serve a gateway on 127.0.0.1 port 0 in ``nursery`` (stopped when the nursery is).
    ``store``: its transcripts (default in memory); ``admission``: default in process."""
    settings = settings_from(config, tuple(providers or ()))
    registry = None
    if providers is not None:
        registry = ProviderRegistry({"echo": EchoProvider(), **providers})
    gateway = create_app(
        settings,
        providers=registry,
        transcripts=store or MemoryStore(),
        admission=admission or LocalAdmission(settings.agents.defaults.max_concurrent),
        responses=responses or MemoryResponses(),
    )
    hconfig = Config()
    hconfig.bind = ["127.0.0.1:0"]
    hconfig.accesslog = None
    hconfig.errorlog = None
    hconfig.graceful_timeout = 0.5
    for key, value in (hypercorn_options or {}).items():
        setattr(hconfig, key, value)
    stop = trio.Event()
    binds = await nursery.start(
        partial(hypercorn.trio.serve, gateway.asgi, hconfig, shutdown_trigger=stop.wait)
    )
    return Server(binds[0], gateway, stop)


@dataclass
class Call:
    """One call of ``ScriptedProvider.stream`` as seen from inside the provider."""

    request: ModelRequest
    started: trio.Event = field(default_factory=trio.Event)
    emitted: trio.Event = field(default_factory=trio.Event)
    ended: trio.Event = field(default_factory=trio.Event)
    cancelled: bool = False
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float = 0.0


class ScriptedProvider:
    """Streams ``words`` with delays, or fails; records each call and when its ``finally`` ran.

    ``first_delay`` is waited before the first event, ``delay`` between words, ``fail`` is raised
    before the first event (or after ``fail_after`` words).
    """

    def __init__(
        self,
        provider_id: str = "scripted",
        *,
        words: list[str] | None = None,
        delay: float = 0.0,
        first_delay: float = 0.0,
        fail: ProviderError | None = None,
        fail_after: int = 0,
    ) -> None:
        self._id = provider_id
        self.words = words if words is not None else ["one ", "two ", "three"]
        self.delay = delay
        self.first_delay = first_delay
        self.fail = fail
        self.fail_after = fail_after
        self.calls: list[Call] = []
        self.call_started = trio.Event()

    @property
    def id(self) -> str:
        return self._id

    async def stream(self, request: ModelRequest, emit: Emit) -> None:
        call = Call(request)
        self.calls.append(call)
        call.started.set()
        self.call_started.set()
        try:
            await trio.sleep(self.first_delay)
            for i, word in enumerate(self.words):
                if self.fail is not None and i == self.fail_after:
                    raise self.fail
                await emit(TextDelta(word))
                call.emitted.set()
                await trio.sleep(self.delay)
            if self.fail is not None and self.fail_after >= len(self.words):
                raise self.fail
            await emit(Usage(prompt_tokens=7, completion_tokens=len(self.words)))
            await emit(Finish("stop"))
        except trio.Cancelled:
            call.cancelled = True
            raise
        finally:
            call.ended_at = time.monotonic()
            call.ended.set()

    async def aclose(self) -> None:
        return None


async def wait_for(predicate: Callable[[], bool], seconds: float = 2.0) -> None:
    """Wait until ``predicate()`` holds: for conditions no event announces (e.g. a request
    having reached the server through the kernel)."""
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 (nothing to wait on: the state is elsewhere)
            await trio.sleep(0.001)


def task_count() -> int:
    """How many trio tasks exist right now (walks the whole task tree)."""

    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for n in task.child_nurseries for child in n.child_tasks)

    return count(trio.lowlevel.current_root_task())
