"""The stores of one process, from its settings: SQLite files in the state directory (the
default), or a PostgreSQL database (``gateway.store.url``) shared by several hosts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.sessions.admission import Admission
from gateway.sessions.base import TranscriptStore
from gateway.sessions.responses import ResponseStore
from gateway.settings import Settings
from gateway.types import JSONObject


@dataclass(frozen=True, slots=True)
class Stores:
    """``serve``: the stores' background work, for the app's lifespan nursery (reports started
    once requests may come); ``aclose`` after serving; ``ping`` for readiness. ``relay``: where
    this host's WebSocket session events go for the other hosts, and ``connect_relay`` hands
    events from them to a callback (``None`` for one host)."""

    transcripts: TranscriptStore
    responses: ResponseStore
    admission: Admission
    serve: Callable[..., Awaitable[None]]
    aclose: Callable[[], Awaitable[None]]
    ping: Callable[[], Awaitable[bool]]
    relay: Callable[[str, list[JSONObject]], None] | None = None
    connect_relay: Callable[[Callable[[str, list[JSONObject]], None]], None] | None = None


def open_stores(
    settings: Settings,
    *,
    shared: bool = False,
    transcripts: TranscriptStore | None = None,
    responses: ResponseStore | None = None,
    admission: Admission | None = None,
) -> Stores:
    """The stores the settings describe; the ones given replace theirs (tests)."""
    max_concurrent = settings.agents.defaults.max_concurrent
    url = settings.gateway.store.url
    if url is not None:
        from gateway.sessions.postgres.store import PgStore

        pg = PgStore(url, max_concurrent=max_concurrent)

        def connect(callback: Callable[[str, list[JSONObject]], None]) -> None:
            pg.events.on_events = callback

        return Stores(
            transcripts or pg.transcripts,
            responses or pg.responses,
            admission or pg.admission,
            pg.serve,
            pg.aclose,
            pg.ping,
            pg.events.publish,
            connect,
        )
    from gateway.sessions.sqlite import SQLiteTranscripts
    from gateway.sessions.sqlite_responses import SQLiteResponses
    from gateway.sessions.state_admission import StateAdmission

    directory = settings.gateway_dir
    transcripts = transcripts or SQLiteTranscripts(directory)
    responses = responses or SQLiteResponses(directory)
    admission = admission or StateAdmission(
        directory,
        max_concurrent=max_concurrent,
        shared=shared or settings.gateway.store.shared,
    )
    parts: tuple[Any, ...] = (transcripts, responses, admission)

    async def aclose() -> None:
        for part in (admission, transcripts, responses):
            await part.aclose()

    async def ping() -> bool:
        return all([await part.ping() for part in parts])

    return Stores(transcripts, responses, admission, admission.serve, aclose, ping)
