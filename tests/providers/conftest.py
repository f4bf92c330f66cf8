from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.testing import FakeUpstream, open_fake_upstream


@pytest.fixture
async def up() -> AsyncIterator[FakeUpstream]:
    async with open_fake_upstream() as upstream:
        yield upstream
