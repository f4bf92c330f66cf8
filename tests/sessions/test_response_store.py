"""The response store contract (``gateway.sessions.responses``), run against every
implementation (``tests.sessions.backends``): put/get, chains and branches, item lookup, input
item pages, delete, prune, and several stores (processes, hosts) on the same data."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from gateway.sessions.responses import MAX_CHAIN, ResponseStore, StoredResponse
from tests.sessions.backends import Backend


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[ResponseStore]:
    async with backend.open_responses() as responses:
        yield responses


def stored(
    response_id: str, previous: str | None = None, inputs: int = 1, created_at: int = 100
) -> StoredResponse:
    items = [
        {"type": "message", "id": f"in_{response_id}_{i}", "role": "user",
         "content": [{"type": "input_text", "text": f"{response_id} {i}"}]}
        for i in range(inputs)
    ]  # fmt: skip
    output: list[dict[str, Any]] = [
        {"type": "message", "id": f"out_{response_id}", "role": "assistant",
         "content": [{"type": "output_text", "text": f"reply {response_id}"}]}
    ]  # fmt: skip
    return StoredResponse(
        id=response_id,
        created_at=created_at,
        agent_id="main",
        session_key=None,
        previous_response_id=previous,
        response={"id": response_id, "object": "response", "output": output},
        input_items=items,
    )


async def test_put_get_delete(store: ResponseStore) -> None:
    await store.put(stored("r1", inputs=2), expires_at=10**10)
    got = await store.get("r1")
    assert got is not None and got.response["id"] == "r1" and len(got.input_items) == 2
    assert got.input_items[1]["content"][0]["text"] == "r1 1"
    assert await store.get("r2") is None
    assert await store.delete("r1") is True
    assert await store.delete("r1") is False
    assert await store.get("r1") is None
    assert await store.find_items(["in_r1_0", "out_r1"]) == {}


async def test_chains_and_branches(store: ResponseStore) -> None:
    for response in (stored("a"), stored("b", "a"), stored("c", "b"), stored("d", "a")):
        await store.put(response, expires_at=10**10)
    chain = await store.chain("c")
    assert chain is not None and [r.id for r in chain] == ["a", "b", "c"]
    branch = await store.chain("d")
    assert branch is not None and [r.id for r in branch] == ["a", "d"]
    assert await store.chain("zzz") is None
    await store.delete("a")  # an ancestor gone: the chain stops there
    rest = await store.chain("c")
    assert rest is not None and [r.id for r in rest] == ["b", "c"]


async def test_items_by_id_newest_wins(store: ResponseStore) -> None:
    await store.put(stored("old", created_at=1), expires_at=10**10)
    newer = stored("new", created_at=2)
    # The client sent an old item again (same id, other text).
    again = {**newer.input_items[0], "id": "in_old_0"}
    newer = dataclasses.replace(newer, input_items=[again])
    await store.put(newer, expires_at=10**10)
    found = await store.find_items(["in_old_0", "out_old", "missing"])
    assert set(found) == {"in_old_0", "out_old"}
    assert found["in_old_0"]["content"][0]["text"] == "new 0"


async def test_many_items_in_order(store: ResponseStore) -> None:
    # More items than one INSERT statement takes (the SQLite store writes them in chunks).
    await store.put(stored("big", inputs=1000), expires_at=10**10)
    got = await store.get("big")
    assert got is not None
    assert [i["id"] for i in got.input_items] == [f"in_big_{i}" for i in range(1000)]
    assert set(await store.find_items(["in_big_0", "in_big_999", "out_big"])) == {
        "in_big_0",
        "in_big_999",
        "out_big",
    }


async def test_input_item_pages(store: ResponseStore) -> None:
    await store.put(stored("r", inputs=5), expires_at=10**10)
    page = await store.input_items("r", 2, None, "desc")
    assert page is not None and [i["id"] for i in page.items] == ["in_r_4", "in_r_3"]
    assert page.has_more
    rest = await store.input_items("r", 10, "in_r_3", "desc")
    assert rest is not None and [i["id"] for i in rest.items] == ["in_r_2", "in_r_1", "in_r_0"]
    assert not rest.has_more
    first = await store.input_items("r", 1, None, "asc")
    assert first is not None and [i["id"] for i in first.items] == ["in_r_0"]
    with pytest.raises(ValueError):
        await store.input_items("r", 1, "nope", "asc")
    assert await store.input_items("zzz", 1, None, "asc") is None


async def test_prune_and_replace(store: ResponseStore) -> None:
    await store.put(stored("short"), expires_at=50)
    await store.put(stored("long"), expires_at=500)
    assert await store.prune(100) == 1
    assert await store.get("short") is None and await store.get("long") is not None
    # Storing an id again replaces it (and its items).
    await store.put(stored("long", inputs=3), expires_at=500)
    page = await store.input_items("long", 10, None, "asc")
    assert page is not None and len(page.items) == 3
    assert await store.ping() is True


async def test_survives_reopening(backend: Backend) -> None:
    async with backend.open_responses() as first:
        await first.put(stored("kept"), expires_at=10**10)
    async with backend.open_responses() as second:
        assert (await second.get("kept")) is not None


async def test_two_stores_share_responses(backend: Backend) -> None:
    """One process (or host) stores, another follows the chain and finds the items."""
    async with backend.open_responses() as first, backend.open_responses() as second:
        await first.put(stored("a", inputs=2), expires_at=10**10)
        await second.put(stored("b", "a"), expires_at=10**10)
        chain = await first.chain("b")
        assert chain is not None and [r.id for r in chain] == ["a", "b"]
        assert [len(r.input_items) for r in chain] == [2, 1]
        assert set(await second.find_items(["in_a_1", "out_b"])) == {"in_a_1", "out_b"}
        # Storing one id again from the other store replaces it whole.
        await second.put(stored("a", inputs=3), expires_at=10**10)
        again = await first.get("a")
        assert again is not None and len(again.input_items) == 3


async def test_empty_lookups_and_a_chain_cycle(store: ResponseStore) -> None:
    assert await store.find_items([]) == {}
    await store.put(stored("x", inputs=0), expires_at=10**10)
    empty = await store.input_items("x", 5, None, "asc")
    assert empty is not None and list(empty.items) == [] and not empty.has_more
    # Responses naming each other (only a broken client could): the walk still ends.
    await store.put(stored("p", "q"), expires_at=10**10)
    await store.put(stored("q", "p"), expires_at=10**10)
    chain = await store.chain("q")
    assert chain is not None and chain[-1].id == "q" and len(chain) == MAX_CHAIN + 1


async def test_concurrent_puts(store: ResponseStore) -> None:
    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(store.put, stored(f"r{n}"), 10**10)
    assert all([await store.get(f"r{n}") is not None for n in range(20)])
