"""What every response store shares, whatever its database: how a stored response and its items
become rows and back, and how a page of input items is cut. Pure.

A response row is ``id, created_at, agent_id, session_key, previous_id, body`` (``body``: the
response object as JSON text); an item row is ``kind, position, item_id, body`` with ``kind``
``input`` (the response's own input items) or ``output`` (its output items).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gateway.sessions.responses import ItemsPage, Order, StoredResponse

# The columns a response is read from (``stored(row, inputs)``), in this order.
RESPONSE_COLUMNS = "id, created_at, agent_id, session_key, previous_id, body"

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
loads = json.loads


def response_row(stored: StoredResponse, expires_at: int) -> tuple[Any, ...]:
    """``id, created_at, expires_at, agent_id, session_key, previous_id, body``."""
    return (
        stored.id, stored.created_at, expires_at, stored.agent_id, stored.session_key,
        stored.previous_response_id, dumps(stored.response),
    )  # fmt: skip


def item_rows(stored: StoredResponse) -> list[tuple[str, str, int, str | None, str]]:
    """``response_id, kind, position, item_id, body`` of every input and output item."""
    return [
        (stored.id, kind, position, item.get("id"), dumps(item))
        for kind, items in (("input", stored.input_items), ("output", stored.response["output"]))
        for position, item in enumerate(items)
    ]


def stored(row: Sequence[Any], inputs: list[Any]) -> StoredResponse:
    """A stored response from its row (``RESPONSE_COLUMNS``) and its decoded input items."""
    response_id, created_at, agent_id, session_key, previous_id, body = row
    return StoredResponse(
        response_id, created_at, agent_id, session_key, previous_id, loads(body), inputs
    )


def items_page(items: list[Any], limit: int, after: str | None, order: Order) -> ItemsPage:
    """A page of a response's input items (``items`` in stored order): ``limit`` of them in
    ``order``, after the first one whose id is ``after``; ``ValueError(after)`` if none is."""
    if order == "desc":
        items = items[::-1]
    start = 0
    if after is not None:
        positions = [i for i, item in enumerate(items) if item.get("id") == after]
        if not positions:
            raise ValueError(after)
        start = positions[0] + 1
    return ItemsPage(items[start : start + limit], start + limit < len(items))
