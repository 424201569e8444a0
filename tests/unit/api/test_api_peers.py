"""A gathering read against broken peer workers: real HTTP servers on loopback that hang, answer
garbage, fail or vanish. Every case ends in 503 WORKER_UNAVAILABLE (with Retry-After) within the
timeout, never an unhandled exception (the API's 500), and never a partial answer.

The peers are small aiohttp servers standing in for a worker's ``/internal/...`` endpoints (a
real hung worker is covered by tests/integration/test_two_workers.py).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from processor.http import peers
from processor.api.errors import ApiError

PATH = "/internal/sites/s/counts"
GOOD = {"members": {"seg": 3}, "users": 7}


async def hang(request: web.Request) -> web.Response:
    await asyncio.sleep(3600)
    return web.json_response(GOOD)


async def hang_mid_body(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"members": {')
    await asyncio.sleep(3600)
    return resp


async def html_500(request: web.Request) -> web.Response:
    return web.Response(status=500, text="<html>Internal Server Error</html>", content_type="text/html")


async def not_json(request: web.Request) -> web.Response:
    return web.Response(text="<html>hello from a proxy</html>", content_type="text/html")


async def wrong_shape(request: web.Request) -> web.Response:
    return web.json_response({"members": [], "users": "many"})


async def json_list(request: web.Request) -> web.Response:
    return web.json_response([1, 2, 3])


async def deep_json(request: web.Request) -> web.Response:
    return web.Response(body=b"[" * 100_000, content_type="application/json")


async def truncated(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "1000"})
    await resp.prepare(request)
    await resp.write(b'{"members": {}, "us')
    request.transport.close()  # type: ignore[union-attr]
    return resp


async def busy(request: web.Request) -> web.Response:
    return web.json_response({"code": "SCAN_BUSY", "message": "busy"}, status=429, headers={"Retry-After": "3"})


async def good(request: web.Request) -> web.Response:
    return web.json_response(GOOD)


@pytest.fixture
async def peer() -> AsyncIterator[Callable[[Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[str]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> str:
        app = web.Application()
        app.router.add_route("*", PATH, handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for r in runners:
        await r.cleanup()


async def call(client: peers.PeerClient, base: str, timeout_s: float = 0.5) -> dict[str, Any]:
    return await client.call(base, "GET", PATH, {"Authorization": "Bearer t"}, None, timeout_s, peers.counts_shape)


@pytest.mark.parametrize("handler", [hang, hang_mid_body, html_500, not_json, wrong_shape, json_list, deep_json,
                                     truncated], ids=lambda h: h.__name__)
async def test_a_broken_peer_is_a_503_within_the_timeout(peer, handler) -> None:
    base = await peer(handler)
    client = peers.PeerClient()
    try:
        with pytest.raises(ApiError) as err:
            await asyncio.wait_for(call(client, base), 30)  # the 30 s guard only keeps a broken test from hanging
    finally:
        await client.close()
    assert (err.value.status, err.value.code) == (503, "WORKER_UNAVAILABLE")
    assert err.value.headers()["Retry-After"].isdigit()
    assert base in err.value.message


async def test_a_peer_that_is_gone_is_a_503() -> None:
    """A worker that stopped (its port now refuses connections)."""
    app = web.Application()
    app.router.add_get(PATH, good)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    client = peers.PeerClient()
    try:
        assert await call(client, base) == GOOD  # the same client works while the peer is up
        await runner.cleanup()
        with pytest.raises(ApiError) as err:
            await call(client, base)
    finally:
        await client.close()
    assert (err.value.status, err.value.code) == (503, "WORKER_UNAVAILABLE")


async def test_a_busy_peer_passes_its_429_on(peer) -> None:
    base = await peer(busy)
    client = peers.PeerClient()
    try:
        with pytest.raises(ApiError) as err:
            await call(client, base)
    finally:
        await client.close()
    assert (err.value.status, err.value.code, err.value.retry_after) == (429, "SCAN_BUSY", 3)


async def test_gather_fails_fast_and_cancels_the_other_calls(peer) -> None:
    """A failing peer answers the read at once: the local scan still running is cancelled (it
    gives its scan slot back), not awaited."""
    base = await peer(html_500)
    client = peers.PeerClient()
    local_started = asyncio.Event()
    local_cancelled = False

    async def local() -> dict[str, Any]:
        nonlocal local_cancelled
        local_started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            local_cancelled = True
            raise
        return GOOD

    try:
        with pytest.raises(ApiError) as err:
            await asyncio.wait_for(peers.gather_all([local, lambda: call(client, base, 5.0)]), 30)
    finally:
        await client.close()
    assert err.value.code == "WORKER_UNAVAILABLE"
    await asyncio.sleep(0)
    assert local_started.is_set() and local_cancelled


async def test_gather_returns_every_answer_in_order(peer) -> None:
    base = await peer(good)
    client = peers.PeerClient()

    async def local() -> dict[str, Any]:
        return {"members": {}, "users": 1}

    try:
        got = await peers.gather_all([local, lambda: call(client, base)])
    finally:
        await client.close()
    assert got == [{"members": {}, "users": 1}, GOOD]


def test_shapes_accept_what_the_workers_answer_and_refuse_the_rest() -> None:
    assert peers.counts_shape({"members": {"a": 1}, "users": 2})
    assert not peers.counts_shape({"members": {"a": True}, "users": 2})
    assert peers.members_shape({"members": [{"user_id": "u", "since": 1, "matched_rule_ids": []}]})
    assert not peers.members_shape({"members": [{"user_id": 5}]})
    assert peers.user_shape({"found": False})
    assert peers.user_shape({"found": True, "deleted": False, "profile": {}, "facts": {
        "s": {"member": True, "change": "ADDED", "cause_kind": "RULE_CHANGED", "cause_id": "c", "since": 1,
              "matched_rule_ids": ["r"]}}})
    assert not peers.user_shape({"found": True, "deleted": False, "profile": {}, "facts": {"s": {"member": 1}}})
    assert peers.preview_shape({"evaluated": 1, "added": 0, "removed": 0, "sample_added": [], "sample_removed": []})
    assert not peers.preview_shape({"evaluated": 1, "added": 0, "removed": 0, "sample_added": [3],
                                    "sample_removed": []})
