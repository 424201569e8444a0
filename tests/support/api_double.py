"""An in-process worker for processor/http: the read model over a caller's in-memory store, and two
real API servers of processor/http (this worker and a peer on loopback) gathering from each other.

Used by the unit tests of gathered reads and of the large-change guard, and by bench/guard_bench.py.
The stores differ per use (recording calls, counting scans, precomputed pages), so they stay there.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from processor import http
from processor.catalog.registry import CatalogRegistry
from processor.config import Settings
from processor.contract.codec import decode_command
from processor.contract.models import Command


class NullMetrics:
    def observe_api(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        pass

    def render(self) -> bytes:
        return b""


class InMemoryModel:
    """The read model of one worker (processor/http/model.py) over ``store``; every command the
    API sends is decoded into ``sent``."""

    def __init__(self, store: Any, url: str = "", log_name: str = "test") -> None:
        self.registry = CatalogRegistry()
        self.store = store
        self.metrics = NullMetrics()
        self.log = logging.getLogger(log_name)
        self.url = url
        self.peers: list[str] = []
        self.sent: list[Command] = []

    def counters(self) -> dict[str, int]:
        return {}

    def readiness(self) -> tuple[bool, bool]:
        return True, True

    def update_gauges(self) -> None:
        pass

    def self_url(self) -> str:
        return self.url

    def peer_urls(self) -> list[str]:
        return self.peers

    async def send_command(self, site_id: str, value: bytes) -> None:
        self.sent.append(decode_command(value))

    def ingest_producer(self, delivery_timeout_s: float) -> Any:
        raise AssertionError("no ingest here")


@asynccontextmanager
async def served_pair(me: InMemoryModel, peer: InMemoryModel, settings: Settings) -> AsyncIterator[TestClient]:
    """Serves ``peer`` on loopback and ``me`` behind the returned client, each knowing both URLs
    as the workers of the group; both servers are closed on exit."""
    me_app, peer_app = web.Application(), web.Application()
    http.install(me_app, me, settings)
    http.install(peer_app, peer, settings)
    peer_server = TestServer(peer_app, host="127.0.0.1")
    await peer_server.start_server()
    client = TestClient(TestServer(me_app, host="127.0.0.1"))
    await client.start_server()
    peer.url = str(peer_server.make_url("")).rstrip("/")
    me.url = str(client.make_url("")).rstrip("/")
    me.peers = peer.peers = sorted([me.url, peer.url])
    try:
        yield client
    finally:
        await client.close()
        await peer_server.close()
