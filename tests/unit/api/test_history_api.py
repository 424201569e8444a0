"""The history and audit endpoints of processor/http (processor/http/history.py), served by the real
HTTP layer over an in-memory read model whose history is a real index (RocksDB in a temp dir).

Nothing without a token or for another site; a worker without an index (HISTORY_ENABLED=0)
answers 503 HISTORY_UNAVAILABLE with Retry-After, never a 500; bad times, cursors and limits are
400 INVALID_PARAMETER at their query path; a parameter given twice is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from processor import http
from processor.api.auth import make_token
from processor.catalog.registry import CatalogRegistry
from processor.config import Settings
from processor.contract.models import MembershipChange
from processor.history.overlay import Overlay
from processor.history.reads import HistoryReads
from processor.history.writer import Retention, Writer
from tests.support.api_double import NullMetrics

SECRET = "unit-test-secret-0123456789-abcdefghijkl"
SITE = "s1"


class Store:
    """Two members of sales now, whatever the history says (the series counts back from it)."""

    def scan(self, site_id: str) -> Any:
        from processor.state.reads import HandleScan

        class Scan(HandleScan):
            def member_segments(self) -> Any:
                yield from ("sales", "sales")

        return Scan([], site_id, lambda: True)


class Model:
    def __init__(self, history: Any) -> None:
        self.registry = CatalogRegistry()
        self.store = Store()
        self.metrics = NullMetrics()
        self.log = logging.getLogger("test")
        self.history = history

    def self_url(self) -> str:
        return "http://127.0.0.1:9"

    def peer_urls(self) -> list[str]:
        return [self.self_url()]


@pytest.fixture
def index(tmp_path: Path) -> Any:
    from rocksdict import Options, Rdict, WriteBatch

    db = Rdict(str(tmp_path / "h"), Options(raw_mode=True))
    ov = Overlay(db)
    w = Writer(ov, Retention())
    import time

    now = int(time.time() * 1000)
    for i in range(3):
        w.add_change(MembershipChange(f"{i:032x}", SITE, "sales", "bob", "ADDED" if i % 2 == 0 else "REMOVED",
                                      "USER_UPDATED", f"ev-{i}", (), now - 1000 + i, now - 1000 + i, ()), now)
    wb = WriteBatch(raw_mode=True)
    for k, v in ov.ops():
        wb.delete(k) if v is None else wb.put(k, v)
    db.write(wb)
    yield db
    db.close()


async def serve(history: Any) -> TestClient:
    app = web.Application()
    http.install(app, Model(history), Settings(bootstrap_servers="127.0.0.1:9", admin_jwt_secret=SECRET))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(index: Any) -> AsyncIterator[TestClient]:
    c = await serve(HistoryReads(lambda: index, Retention(), lambda: {"lag": 0, "open": True, "read": 3}))
    yield c
    await c.close()


def auth(site: str = SITE) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(SECRET, 'alice', site, ['site_admin'])}"}


PATHS = [f"/sites/{SITE}/users/bob/history", f"/sites/{SITE}/segments/sales/history", f"/sites/{SITE}/audit",
         f"/sites/{SITE}/users/bob/segments/sales/explain?as_of=2026-11-20"]


async def test_reads_need_a_token_for_the_site(client: TestClient) -> None:
    for path in PATHS:
        assert (await client.get(path)).status == 401, path
        assert (await client.get(path, headers=auth("other"))).status == 403, path


async def test_a_user_history_page(client: TestClient) -> None:
    r = await client.get(f"/sites/{SITE}/users/bob/history?limit=2", headers=auth())
    body = await r.json()
    assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
    assert [c["change_id"] for c in body["changes"]] == [f"{2:032x}", f"{1:032x}"]
    r = await client.get(f"/sites/{SITE}/users/bob/history?limit=2&cursor={body['next_cursor']}", headers=auth())
    assert [c["change_id"] for c in (await r.json())["changes"]] == [f"{0:032x}"]
    assert body["index"] == {"max_age_days": 90, "max_changes_per_user": 1000, "lag": 0, "open": True, "read": 3}


async def test_the_segment_series_counts_back_from_the_member_count_now(client: TestClient) -> None:
    r = await client.get(f"/sites/{SITE}/segments/sales/history", headers=auth())
    body = await r.json()
    assert r.status == 200 and body["series_basis"] == "live"
    today = body["series"][-1]
    assert (today["added"], today["removed"], today["size"]) == (2, 1, 2)  # the index alone would say 1
    assert body["series"][-2]["size"] == 1  # before today's +2 -1


@pytest.mark.parametrize("query,path", [
    ("since=yesterday", "$query.since"), ("until=2026-02-30", "$query.until"), ("limit=0", "$query.limit"), ("limit=", "$query.limit"),
    ("cursor=%%%", "$query.cursor"), ("cursor=AA", "$query.cursor"), ("since=2026-11-21&until=2026-11-20", "$query.since"),
    ("limit=5&limit=6", "$query.limit"), ("nope=1", "$query.nope"),
])
async def test_bad_parameters_are_400_at_their_path(client: TestClient, query: str, path: str) -> None:
    r = await client.get(f"/sites/{SITE}/segments/sales/history?{query}", headers=auth())
    body = await r.json()
    assert (r.status, body["code"], body["path"]) == (400, "INVALID_PARAMETER", path), body


@pytest.mark.parametrize("query", ["as_of=", "as_of=soon"])
async def test_a_bad_as_of_is_400(client: TestClient, query: str) -> None:
    r = await client.get(f"/sites/{SITE}/users/bob/segments/sales/explain?{query}", headers=auth())
    body = await r.json()
    assert (r.status, body["code"], body["path"]) == (400, "INVALID_PARAMETER", "$query.as_of"), body


@pytest.mark.parametrize("history", ["none", "closed"])
async def test_without_an_open_index_every_read_is_503(history: str) -> None:
    c = await serve(None if history == "none" else HistoryReads(lambda: None, Retention()))
    try:
        for path in PATHS:
            r = await c.get(path, headers=auth())
            body = await r.json()
            assert (r.status, body["code"]) == (503, "HISTORY_UNAVAILABLE"), (path, body)
            assert r.headers["Retry-After"] == "2"
    finally:
        await c.close()


async def test_a_complete_index_counts_its_series_forward_without_asking_the_workers(index: Any) -> None:
    """An index that read the changes topic from its first record needs no gather (and no peer)."""
    from processor.history import keys as K

    index.put(K.COMPLETE, b"1")
    c = await serve(HistoryReads(lambda: index, Retention()))
    try:
        r = await c.get(f"/sites/{SITE}/segments/sales/history", headers=auth())
        body = await r.json()
        assert body["series_basis"] == "history"
        assert body["series"][-1]["size"] == 1  # ADDED, REMOVED, ADDED: the index's own count
    finally:
        await c.close()
