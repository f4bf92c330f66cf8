"""Where a py-spy profile's samples fall: ``summarise(raw_text)``.

Input: py-spy's ``raw`` format, one collapsed stack per line, root first, then the sample count:
``main (gateway/cli.py:12);run (trio/_core/_run.py:2410);... 7``. Each frame names its file
relative to its ``sys.path`` entry (or absolute: both are understood).

Each sample goes to the part that owns the innermost frame belonging to one (``PARTS``, first
match wins). Frames of libraries that serve whoever calls them (h11, json, the rest of the
standard library) belong to no part, so their time goes to their caller: h11 under Hypercorn is
Hypercorn's, h11 under the gateway's upstream client is the client's. A stack with no owned
frame at all is ``other``.
"""

from __future__ import annotations

import re
from typing import Any

# part, path prefixes (relative to the package root). Order matters: more specific first.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("admission (gateway/sessions, SQLite)", ("gateway/sessions/", "sqlite3/")),
    (
        "upstream HTTP client",
        (
            "gateway/providers/http11/",
            "gateway/providers/upstream_http.py",
            "httpx/",
            "httpcore/",
            "anyio/",
        ),
    ),
    (
        "Hypercorn / Quart",
        ("hypercorn/", "quart/", "quart_trio/", "werkzeug/", "flask/", "wsproto/", "h2/"),
    ),
    ("logging (stdlib)", ("logging/",)),
    ("socket system calls (through trio)", ("trio/_socket.py", "trio/_highlevel_socket.py")),
    ("trio (scheduler, cancel scopes, channels)", ("trio/", "outcome/", "sniffio/")),
    ("our code (gateway/, the rest)", ("gateway/",)),
)
OTHER = "other"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<path>.*?)(?::\d+)?\)$")
# Package roots: a path is cut to start at the first of these it contains.
_ROOTS = frozenset(prefix.split("/")[0] for _, prefixes in PARTS for prefix in prefixes) | {"h11"}


def frame_path(frame: str) -> str:
    """The file of a frame, relative to its package root when one is recognised."""
    match = _FRAME.match(frame)
    path = match.group("path") if match else frame
    parts = path.split("/")
    for index, part in enumerate(parts):
        if part in _ROOTS:
            return "/".join(parts[index:])
    return path


def part_of(stack: list[str]) -> str:
    """The part a sample with this stack (root first) counts for."""
    for frame in reversed(stack):
        path = frame_path(frame)
        for name, prefixes in PARTS:
            if path.startswith(prefixes):
                return name
    return OTHER


def parse(raw: str) -> list[tuple[list[str], int]]:
    """``(stack, samples)`` per line of py-spy's raw output."""
    out = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def summarise(raw: str, top: int = 8) -> dict[str, Any]:
    """Per part, the share of samples (%); also the functions with the most samples of their
    own (the innermost frame)."""
    stacks = parse(raw)
    total = sum(count for _, count in stacks)
    parts: dict[str, int] = {name: 0 for name, _ in PARTS}
    parts[OTHER] = 0
    leaves: dict[str, int] = {}
    for stack, count in stacks:
        parts[part_of(stack)] += count
        match = _FRAME.match(stack[-1])
        leaf = f"{match.group('function')} ({frame_path(stack[-1])})" if match else stack[-1]
        leaves[leaf] = leaves.get(leaf, 0) + count
    share = {name: 100 * n / total if total else 0.0 for name, n in parts.items()}
    ranked = sorted(leaves.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return {
        "samples": total,
        "categories": share,
        "top_own": [{"function": f, "pct": 100 * n / total} for f, n in ranked],
    }
