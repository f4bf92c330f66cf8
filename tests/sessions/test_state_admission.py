"""Choosing in-process or shared admission for a state directory (two ``StateAdmission``s on one
directory behave like two processes: ``flock`` locks belong to each open file)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trio

from gateway.sessions import state_admission
from gateway.sessions.admission import LocalAdmission
from gateway.sessions.shared_admission import SharedAdmission
from gateway.sessions.state_admission import StateAdmission, StateDirectoryBusy

Opener = Callable[..., Awaitable[StateAdmission]]


@pytest.fixture
async def open_state(tmp_path: Path) -> AsyncIterator[Opener]:
    opened: list[StateAdmission] = []
    async with trio.open_nursery() as nursery:

        async def opener(*, shared: bool = False) -> StateAdmission:
            admission = StateAdmission(tmp_path, max_concurrent=2, shared=shared)
            opened.append(admission)
            await nursery.start(admission.serve)
            return admission

        yield opener
        for admission in opened:
            await admission.aclose()


async def test_a_lone_process_admits_in_process(open_state: Opener, tmp_path: Path) -> None:
    admission = await open_state()
    assert isinstance(admission.inner, LocalAdmission) and not admission.shared
    assert (tmp_path / "admission.lock").read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "lanes.sqlite3").exists()  # no database on this path


async def test_known_siblings_share_from_the_start(open_state: Opener) -> None:
    first, second = await open_state(shared=True), await open_state(shared=True)
    assert isinstance(first.inner, SharedAdmission) and isinstance(second.inner, SharedAdmission)


async def test_a_newcomer_joins_shared_processes(open_state: Opener) -> None:
    await open_state(shared=True)
    newcomer = await open_state()
    assert isinstance(newcomer.inner, SharedAdmission)


async def test_a_newcomer_waits_for_the_lone_process_to_stop(
    open_state: Opener, tmp_path: Path
) -> None:
    lone = await open_state()
    newcomer = StateAdmission(tmp_path, max_concurrent=2, shared=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(newcomer.serve)
        await trio.sleep(0.3)  # a few lock polls: it must still be waiting
        assert newcomer.inner is None
        await lone.aclose()  # the old process stops
        with trio.fail_after(2):
            while newcomer.inner is None:  # noqa: ASYNC110 (the lock is another open file's)
                await trio.sleep(0.01)
        assert isinstance(newcomer.inner, SharedAdmission)
        await newcomer.aclose()


async def test_a_lone_process_that_stays_refuses_the_newcomer(
    open_state: Opener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_admission, "LONE_WAIT", 0.2)
    await open_state()
    newcomer = StateAdmission(tmp_path, max_concurrent=2, shared=False)
    with pytest.raises(StateDirectoryBusy, match=f"gateway process {os.getpid()} serves"):
        await newcomer.serve()
    await newcomer.aclose()


async def test_admit_before_serve_is_an_error(tmp_path: Path) -> None:
    admission = StateAdmission(tmp_path, max_concurrent=2, shared=False)
    with pytest.raises(RuntimeError, match="serve"):
        admission.admit("k", lambda: None)
    assert await admission.request_kill("k") is False
    assert await admission.ping() is False
