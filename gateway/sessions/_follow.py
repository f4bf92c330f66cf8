"""Waking the followers of sessions: tasks waiting for messages appended to a session
(``TranscriptStore.wait_appended``, behind live history).

A follower registers for its session (``watching``) *before* it reads the transcript, then
waits on what it got: an append committed after its read rings it, one committed before is in
what it read, so nothing falls between the two. Who rings:

- this store object, after each of its own commits (``ring(key)``): followers wake at once;
- other processes or hosts, through the store: a notification (``ring`` / ``ring_all``), or
  the ``probe`` that the waiting followers run for everyone, at most once per ``interval``
  and only while someone waits. The probe reads a fingerprint of every watched session in one
  query (something that changes with each append, reset and delete); a session whose
  fingerprint changed, or is seen for the first time, is rung, and its followers read again.

A ring carries nothing: the followers read the database, the only source of truth, so an
extra ring costs one read and a lost one at most the next probe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import trio

T = TypeVar("T")

# key -> fingerprint of the watched sessions that exist (a missing key: no such session).
Probe = Callable[[Sequence[str]], Awaitable[Mapping[str, object]]]


@dataclass(frozen=True, slots=True)
class FollowStatistics:
    sessions: int  # sessions someone waits on
    waiters: int


class _Bell:
    __slots__ = ("event", "waiters")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.waiters = 0


class AppendWatch:
    """The followers of one store object's sessions (see the module docstring). ``probe``:
    how to see other processes' writes (``None``: only this object writes)."""

    def __init__(self, probe: Probe | None, interval: float) -> None:
        self._probe = probe
        self._interval = interval
        self._bells: dict[str, _Bell] = {}
        self._seen: dict[str, object] = {}
        self._probed_at: float | None = None  # the first probe is due an interval after a wait
        self._probing = False

    def ring(self, key: str) -> None:
        """Wake the followers of ``key``. Never blocks."""
        bell = self._bells.pop(key, None)
        if bell is not None:
            bell.event.set()

    def ring_all(self) -> None:
        """Wake every follower (notifications may have been missed)."""
        for key in list(self._bells):
            self.ring(key)

    def statistics(self) -> FollowStatistics:
        bells = self._bells.values()
        return FollowStatistics(len(bells), sum(bell.waiters for bell in bells))

    async def wait_for(self, key: str, read: Callable[[], Awaitable[T | None]]) -> T | None:
        """``read()`` until it finds something (a truthy value, or ``None``: the follower
        stops), reading again whenever ``key`` is rung; as long as it takes (the caller's
        cancel scope bounds it). Cancellable at any point; registrations end with the call."""
        while True:
            with self._watching(key) as rung:
                found = await read()
                if found is None or found:
                    return found
                await self._wait(rung)

    @contextmanager
    def _watching(self, key: str) -> Iterator[trio.Event]:
        bell = self._bells.get(key)
        if bell is None:
            bell = self._bells[key] = _Bell()
        bell.waiters += 1
        try:
            yield bell.event
        finally:
            bell.waiters -= 1
            if bell.waiters == 0 and self._bells.get(key) is bell:
                del self._bells[key]

    async def _wait(self, rung: trio.Event) -> None:
        """Until ``rung``, probing for everyone whenever a probe is due."""
        if self._probe is None:
            await rung.wait()
            return
        while not rung.is_set():
            now = trio.current_time()
            if self._probed_at is None:
                self._probed_at = now
            due = self._probed_at + self._interval
            if due <= now and not self._probing:
                await self._run_probe(self._probe)
                continue
            # A probe running late (a slow database): look again an interval from now.
            with trio.move_on_at(due if due > now else now + self._interval):
                await rung.wait()

    async def _run_probe(self, probe: Probe) -> None:
        self._probing = True
        self._probed_at = trio.current_time()
        try:
            keys = list(self._bells)
            found = await probe(keys)
        finally:
            self._probing = False
        seen = self._seen
        for stale in [key for key in seen if key not in self._bells]:
            del seen[stale]
        for key in keys:
            fingerprint = found.get(key)
            if key not in seen or seen[key] != fingerprint:
                seen[key] = fingerprint
                self.ring(key)
