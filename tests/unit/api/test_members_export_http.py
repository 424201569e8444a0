"""GET /sites/{site}/segments/{segment}/members.csv over HTTP, on two served API apps
(processor/http) with in-memory read models: the whole list from both workers, in pages, merged
and streamed; a worker failing after the first byte ends in an incomplete download (the client
gets an error, not a short file that looks complete); before the first byte it is a clean 503.

Expected rows come from the members the test gave each worker's store.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from processor import http
from processor.api.auth import make_token
from processor.catalog.model import Segment, SiteCatalog
from processor.catalog.registry import CatalogRegistry
from processor.config import Settings
from processor.http import people
from processor.state.members import member_entry
from processor.state.user_state import UserState, encode_state

SECRET = "unit-test-secret-0123456789-abcdefghijkl"
SITE = "site-1"
PAGE = 7


class ListStore:
    """One worker's members (user id -> profile), read like the RocksDB store."""

    def __init__(self, profiles: dict[str, dict[str, Any]], partitions: list[int]) -> None:
        self.profiles = profiles
        self.partitions = partitions
        self.pages = 0
        self.fail_at_page: int | None = None
        self.move_at_page: int | None = None

    def owned_partitions(self) -> list[int]:
        return self.partitions

    def scan(self, site_id: str) -> "ListScan":
        return ListScan(self, site_id)


class ListScan:
    """The store's segment read: one call per page asked for (counted)."""

    def __init__(self, store: ListStore, site_id: str) -> None:
        self.store = store
        self.site_id = site_id

    def partition_members(self, segment_id: str, after: str = "") -> list[Iterator[tuple[str, bytes, bytes | None]]]:
        return [self.segment_members(segment_id, after)]

    def segment_members(self, segment_id: str, after: str = "") -> Iterator[tuple[str, bytes, bytes | None]]:
        s = self.store
        s.pages += 1
        if s.pages == s.fail_at_page:
            raise RuntimeError("disk gone")
        if s.pages == s.move_at_page:
            s.partitions = [*s.partitions, 99]
        for u in sorted(s.profiles):
            if u > after:
                yield (u, member_entry(1_764_930_000_000, ("r1",), "RULE_CREATED"),
                       encode_state(UserState(self.site_id, u, profile=s.profiles[u])))


class Metrics:
    def observe_api(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        pass


class Model:
    def __init__(self, store: ListStore) -> None:
        self.registry = CatalogRegistry()
        self.registry.sites[SITE] = SiteCatalog(SITE, segments={"seg": Segment("seg", "Seg", True)})
        self.store = store
        self.metrics = Metrics()
        self.log = logging.getLogger("test")
        self.url = ""
        self.peers: list[str] = []

    def self_url(self) -> str:
        return self.url

    def peer_urls(self) -> list[str]:
        return self.peers


def profiles(ids: range, worker: str) -> dict[str, dict[str, Any]]:
    out = {f"u{i:03d}": {"firstname": f"First{i}", "lastname": worker, "email": f"u{i}@example.org"} for i in ids}
    out[f"{worker}-evil"] = {"firstname": "=HYPERLINK(\"http://x\")", "lastname": "", "email": "@x"}
    return out


@pytest.fixture
async def workers(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Model, Model]]:
    monkeypatch.setattr(people, "EXPORT_PAGE", PAGE)
    settings = Settings(bootstrap_servers="127.0.0.1:9", admin_jwt_secret=SECRET)
    models = (Model(ListStore(profiles(range(0, 60, 2), "a"), [0, 2])),
              Model(ListStore(profiles(range(1, 60, 2), "b"), [1, 3])))
    servers = []
    for m in models:
        app = web.Application()
        http.install(app, m, settings)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        m.url = str(server.make_url("")).rstrip("/")
        servers.append(server)
    for m in models:
        m.peers = sorted(x.url for x in models)
    try:
        yield models
    finally:
        for s in servers:
            await s.close()


def token(site: str = SITE) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(SECRET, 'alice', site, ['site_admin'])}"}


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers or {}) as r:
        return r.status, dict(r.headers), await r.read()


async def test_the_whole_list_from_both_workers_in_user_order(workers: tuple[Model, Model]) -> None:
    a, b = workers
    status, headers, body = await get(f"{a.url}/sites/{SITE}/segments/seg/members.csv", token())
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/csv") and headers["Cache-Control"] == "no-store"
    assert headers["Content-Disposition"].startswith('attachment; filename="site-1-seg-members.csv"')
    assert body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    assert rows[0] == ["user_id", "name", "email", "member_since_utc", "matched_rule_ids"]
    want = {**a.store.profiles, **b.store.profiles}
    assert [r[0] for r in rows[1:]] == sorted(want)
    by_id = {r[0]: r for r in rows[1:]}
    assert by_id["u007"] == ["u007", "First7 b", "u7@example.org", "2025-12-05 10:20:00", "r1"]
    assert by_id["a-evil"][1:3] == ["'=HYPERLINK(\"http://x\")", "'@x"]
    # the pages were 7 long: both workers were asked page after page, not for the whole list
    assert a.store.pages == len(a.store.profiles) // PAGE + 1 and b.store.pages == len(b.store.profiles) // PAGE + 1


async def test_a_token_for_the_site_and_an_existing_segment_are_needed(workers: tuple[Model, Model]) -> None:
    a, _ = workers
    assert (await get(f"{a.url}/sites/{SITE}/segments/seg/members.csv"))[0] == 401
    assert (await get(f"{a.url}/sites/{SITE}/segments/seg/members.csv", token("other")))[0] == 403
    status, _, body = await get(f"{a.url}/sites/{SITE}/segments/nope/members.csv", token())
    assert status == 404 and b"UNKNOWN_SEGMENT" in body


@pytest.mark.parametrize("failure", ["peer fails", "peer moves", "this worker fails"])
async def test_a_failure_after_the_first_byte_is_an_incomplete_download(workers: tuple[Model, Model],
                                                                      failure: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = workers
    monkeypatch.setattr(people, "FLUSH_BYTES", 200)  # rows reach the client before the failure
    store = a.store if failure == "this worker fails" else b.store
    if failure == "peer moves":
        store.move_at_page = 3
    else:
        store.fail_at_page = 3
    got = bytearray()
    async with aiohttp.ClientSession() as s, s.get(f"{a.url}/sites/{SITE}/segments/seg/members.csv",
                                                   headers=token()) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                got += chunk
    rows = got.decode("utf-8-sig").split("\r\n")
    assert rows[0].startswith("user_id,name") and 1 < len(rows) < len(a.store.profiles) + len(b.store.profiles)


async def test_a_worker_failing_before_the_first_byte_is_a_503(workers: tuple[Model, Model]) -> None:
    a, b = workers
    b.store.fail_at_page = 1
    status, headers, body = await get(f"{a.url}/sites/{SITE}/segments/seg/members.csv", token())
    assert status == 503 and b"WORKER_UNAVAILABLE" in body and headers["Retry-After"].isdigit()
