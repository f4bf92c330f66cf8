"""``UpstreamHttp`` on the HTTP/1.1 client, through the real providers: which connection each
request uses (the stale retry, after abandonment), what goes on the wire, compressed answers,
and invalid answers as ``ProviderError``s."""

from __future__ import annotations

import gzip

import pytest
import trio
import trio.testing

from gateway.providers.base import ProviderError
from gateway.settings import ProviderApi
from gateway.testing import FakeUpstream, Script
from tests.providers.http11.support import answering, start_raw_server
from tests.providers.support import collect, open_provider, request, settings_for, text_of, user

pytestmark = pytest.mark.parametrize("api", ["openai-completions", "anthropic-messages"])


async def test_the_stale_retry_opens_a_new_connection(up: FakeUpstream, api: ProviderApi) -> None:
    """With two connections idle, the one taken turns out dead: the retry does not take the
    other idle one (it may be just as dead) but opens a new connection."""
    up.enqueue(Script(text="a"), Script(text="b"))
    async with open_provider(settings_for(up.base_url, api)) as provider:
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(collect, provider)
        up.enqueue(Script(fault="close_before_headers"), Script(text="c"))
        assert text_of(await collect(provider)) == "c"
    connections = [record.connection for record in up.requests]
    assert sorted(connections[:2]) == [1, 2]
    assert connections[2] in (1, 2)
    assert connections[3] == 3


async def test_the_retry_is_not_retried(up: FakeUpstream, api: ProviderApi) -> None:
    up.enqueue(Script(text="warm"), *[Script(fault="close_before_headers")] * 2)
    async with open_provider(settings_for(up.base_url, api)) as provider:
        await collect(provider)
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == "upstream"
    assert "closed without a response" in caught.value.message
    assert [record.connection for record in up.requests] == [1, 1, 2]


async def test_what_goes_on_the_wire(up: FakeUpstream, api: ProviderApi) -> None:
    async with open_provider(settings_for(up.base_url, api)) as provider:
        await collect(provider)
    headers = up.requests[0].headers
    assert headers["user-agent"] == "openclaw-gateway"
    assert headers["accept-encoding"] == "identity"
    assert headers["host"] == f"127.0.0.1:{up.port}"
    assert int(headers["content-length"]) > 0
    assert isinstance(up.requests[0].body, dict)  # the whole JSON document, as sized
    assert "transfer-encoding" not in headers and "connection" not in headers


async def test_configured_headers_that_cannot_be_sent(api: ProviderApi) -> None:
    settings = settings_for("http://127.0.0.1:9/v1", api, headers={"X-Team": "a\r\nb: c"})
    async with open_provider(settings) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == "connect"
    assert caught.value.message.startswith(
        "Provider 'fake' cannot send its request: invalid request header"
    )


def sse_body(api: ProviderApi) -> bytes:
    if api == "openai-completions":
        chunk = b'{"choices": [{"index": 0, "delta": {"content": "zipped"}}]}'
        return b"data: " + chunk + b"\n\ndata: [DONE]\n\n"
    events = [
        b'event: message_start\ndata: {"type": "message_start", "message": {"usage": {}}}',
        b'event: content_block_start\ndata: {"type": "content_block_start", "index": 0, '
        b'"content_block": {"type": "text", "text": ""}}',
        b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, '
        b'"delta": {"type": "text_delta", "text": "zipped"}}',
        b'event: message_stop\ndata: {"type": "message_stop"}',
    ]
    return b"\n\n".join(events) + b"\n\n"


async def test_a_gzip_stream_is_decoded(nursery: trio.Nursery, api: ProviderApi) -> None:
    body = gzip.compress(sse_body(api))
    response = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
        b"content-length: %d\r\n\r\n" % len(body) + body
    )
    server = await start_raw_server(nursery, answering(response))
    async with open_provider(settings_for(f"http://127.0.0.1:{server.port}/v1", api)) as provider:
        assert text_of(await collect(provider)) == "zipped"


INVALID = {
    "not-http": (b"220 smtp.example ESMTP ready\r\n\r\n", "protocol", "sent an invalid response"),
    "bad-chunk": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\nxyz\r\n",
        "protocol",
        "sent an invalid response",
    ),
    "unknown-coding": (
        b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 2\r\n\r\nhi",
        "protocol",
        "unsupported Content-Encoding 'br'",
    ),
    "not-gzip": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-encoding: gzip\r\n"
        b"content-length: 4\r\n\r\nnope",
        "protocol",
        "undecodable gzip body",
    ),
    "cut-body": (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 99\r\n\r\n"
        b"data: {}\n\n",
        "upstream",
        "broke the connection while reading the response",
    ),
}


@pytest.mark.parametrize("name", list(INVALID))
async def test_invalid_answers(nursery: trio.Nursery, api: ProviderApi, name: str) -> None:
    response, kind, words = INVALID[name]
    server = await start_raw_server(nursery, answering(response, then_close=True))
    async with open_provider(settings_for(f"http://127.0.0.1:{server.port}/v1", api)) as provider:
        with pytest.raises(ProviderError) as caught:
            await collect(provider)
    assert caught.value.kind == kind
    assert words in caught.value.message
    assert caught.value.message.startswith("Provider 'fake' ")


async def test_cancel_while_writing_the_request_closes_at_once(
    nursery: trio.Nursery, api: ProviderApi
) -> None:
    accepted: list[trio.abc.Stream] = []
    connected = trio.Event()

    async def never_read(stream: trio.abc.Stream) -> None:
        accepted.append(stream)
        connected.set()
        await trio.sleep_forever()

    server = await start_raw_server(nursery, never_read)
    big = request(user("x" * 16_000_000))  # beyond what the socket buffers hold
    async with open_provider(settings_for(f"http://127.0.0.1:{server.port}/v1", api)) as provider:
        with trio.CancelScope() as scope:

            async def cancel_once_stuck() -> None:
                await connected.wait()
                await trio.testing.wait_all_tasks_blocked(0.05)  # the write is stuck
                scope.cancel()

            nursery.start_soon(cancel_once_stuck)
            await collect(provider, big)
        assert scope.cancelled_caught
        with trio.fail_after(5):  # the connection was closed: reading ends (EOF or reset)
            try:
                while await accepted[0].receive_some(1 << 20):
                    pass
            except trio.BrokenResourceError:
                pass
