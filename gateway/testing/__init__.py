"""Test helpers that ship with the package (the fake upstream is also used by benchmarks)."""

from gateway.testing.fake_upstream import (
    FakeUpstream,
    LogEntry,
    RequestRecord,
    open_fake_upstream,
    serve_fake_upstream,
)
from gateway.testing.fake_upstream_script import FakeToolCall, Script

__all__ = [
    "FakeToolCall",
    "FakeUpstream",
    "LogEntry",
    "RequestRecord",
    "Script",
    "open_fake_upstream",
    "serve_fake_upstream",
]
