"""The fake upstream as a separate process, for benchmarks: ``python -m bench._upstream``.

It is ``gateway.testing.fake_upstream`` with two additions a benchmark needs when the gateway
sits between it and the client (a gateway forwards the messages, not our headers):

- per-request knobs travel in the last user message's text: ``bench:<id> fake:{<Script
  fields as JSON>}``; ``<id>`` names the request, the JSON is merged over the default script;
- with ``--records``, one JSON line per event goes to stdout: ``{"rx": [id, at]}`` when a request
  has been received, ``{"cl": [id, at, cause]}`` when its connection closed, and
  ``{"open": n}`` whenever the number of open connections changes (checked every 20 ms). Times
  are ``time.monotonic()``, comparable with the benchmark's own on the same machine.

The first line printed is always ``{"base_url": "http://127.0.0.1:<port>/v1"}``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from contextlib import suppress
from functools import partial
from typing import Any

import trio

from gateway.testing import FakeUpstream, RequestRecord, Script, serve_fake_upstream

_TAG = re.compile(r"bench:(\S+)")


def knobs_of(body: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The bench id and the knobs carried by the last user message of a request body."""
    if not isinstance(body, dict):
        return None, None
    text = ""
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            text = content if isinstance(content, str) else ""
            break
    tag = _TAG.search(text)
    knobs = None
    start = text.find("fake:")
    if start >= 0:
        with suppress(ValueError):
            knobs = json.loads(text[start + 5 :])
    return (tag.group(1) if tag else None), (knobs if isinstance(knobs, dict) else None)


def emit(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def _watch_close(record: RequestRecord, bench_id: str) -> None:
    await record.closed.wait()
    emit({"cl": [bench_id, record.closed_at, record.close_cause]})


async def _watch_open(upstream: FakeUpstream) -> None:
    last = -1
    while True:
        if upstream.connections_open != last:
            last = upstream.connections_open
            emit({"open": last})
        await trio.sleep(0.02)


async def serve(args: argparse.Namespace) -> None:
    default = Script(tokens=args.tokens, token_delay=args.delay_ms / 1000)
    async with trio.open_nursery() as nursery:
        serve_it = partial(serve_fake_upstream, default, host=args.host, port=args.port)
        upstream: FakeUpstream = await nursery.start(partial(serve_it, keep_records=False))
        record_request = upstream.record_request

        def record_with_knobs(*request: Any) -> RequestRecord:
            record = record_request(*request)
            bench_id, knobs = knobs_of(record.body)
            if knobs:
                try:
                    record.script = record.script.with_overrides(knobs)
                except (TypeError, ValueError) as exc:
                    print(f"bench upstream: bad knobs {knobs!r}: {exc}", file=sys.stderr)
            if args.records and bench_id is not None:
                emit({"rx": [bench_id, record.time_of("received")]})
                nursery.start_soon(_watch_close, record, bench_id)
            return record

        # An instance attribute: the connection driver calls ``server.record_request``.
        upstream.record_request = record_with_knobs  # type: ignore[method-assign]
        emit({"base_url": upstream.base_url})
        if args.records:
            nursery.start_soon(_watch_open, upstream)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--records", action="store_true", help="print per-request events")
    args = parser.parse_args(argv)
    with suppress(KeyboardInterrupt):
        trio.run(serve, args)


if __name__ == "__main__":
    main()
