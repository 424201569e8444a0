"""Hostile parameters on the history and audit reads (processor/http/history.py), served by the
real HTTP layer over a real history index (RocksDB in a temp dir; the fixtures of
tests/unit/api/test_history_api.py).

Times outside 1970-01-01..9999-12-31 or in no accepted form, garbage and forged cursors, and a
segment filter that is no id: each a 400 with a code at its query path, never a 500. A forged
but well-formed cursor reads only the user's (segment's) own changes: it cannot reach another
user's, segment's or site's.
"""

from __future__ import annotations

import base64
import time
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from processor.contract.models import MembershipChange
from processor.history.overlay import Overlay
from processor.history.reads import HistoryReads
from processor.history.writer import Retention, Writer
from tests.unit.api.test_history_api import SITE, auth, index, serve  # noqa: F401 - index is a fixture

S = f"/sites/{SITE}"
ROUTES = ["users/bob/history", "segments/sales/history", "audit"]
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z (docs/api.md: times from 1970 to 9999)


@pytest.fixture
async def client(index: Any) -> AsyncIterator[TestClient]:  # noqa: F811
    """The index of test_history_api (bob's three changes of sales) plus changes of another user,
    another segment and another site, which no read of bob or of sales may return."""
    from rocksdict import WriteBatch

    ov = Overlay(index)
    w = Writer(ov, Retention())
    now = int(time.time() * 1000)
    others = [(SITE, "sales", "eve"), (SITE, "hr", "bob"), ("s2", "sales", "bob")]
    for i, (site, seg, user) in enumerate(others):
        w.add_change(MembershipChange(f"{100 + i:032x}", site, seg, user, "ADDED", "USER_UPDATED", f"o-{i}", (),
                                      now - 5000 + i, now - 5000 + i, ()), now)
    wb = WriteBatch(raw_mode=True)
    for k, v in ov.ops():
        wb.delete(k) if v is None else wb.put(k, v)
    index.write(wb)
    c = await serve(HistoryReads(lambda: index, Retention(), lambda: {"lag": 0, "open": True, "read": 6}))
    yield c
    await c.close()


BAD_TIMES = ["10000-01-01", "0000-01-01", "1969-12-31", "-1", "-86400000", str(MAX_MS + 1), "9" * 17, "9" * 400,
             "1e10", "NaN", "inf", "+5", "0x10", "2026-11-20T25:00", "2026-11-20T10:00+25:00", "2026-02-30",
             "9999-12-31T23:59:59-23:59", "yesterday", "x" * 5000, "\x00"]


@pytest.mark.parametrize("value", BAD_TIMES)
async def test_a_bad_time_is_400_at_its_parameter_on_every_history_read(client: TestClient, value: str) -> None:
    """Far past, far future, negative epochs, huge integers, non-numbers, impossible dates: 400
    INVALID_PARAMETER at ``$query.<name>`` for since and until on every read, and for as_of."""
    for route in ROUTES:
        for name in ("since", "until"):
            r = await client.get(f"{S}/{route}", params={name: value}, headers=auth())
            body = await r.json()
            assert (r.status, body["code"], body["path"]) == (400, "INVALID_PARAMETER", f"$query.{name}"), (
                route, name, body)
    r = await client.get(f"{S}/users/bob/segments/sales/explain", params={"as_of": value}, headers=auth())
    body = await r.json()
    assert (r.status, body["code"], body["path"]) == (400, "INVALID_PARAMETER", "$query.as_of"), body


@pytest.mark.parametrize("value,expected", [("9999-12-31", MAX_MS), (str(MAX_MS), MAX_MS), ("0", 0),
                                            ("1970-01-01", 86_400_000 - 1)])
async def test_the_ends_of_the_range_are_answered(client: TestClient, value: str, expected: int) -> None:
    """9999-12-31 (its end) and the epoch itself are valid times: 200, never an overflow."""
    r = await client.get(f"{S}/users/bob/segments/sales/explain", params={"as_of": value}, headers=auth())
    body = await r.json()
    assert (r.status, body["as_of"]) == (200, expected), body
    for route in ROUTES:
        r = await client.get(f"{S}/{route}", params={"since": "0", "until": value}, headers=auth())
        assert r.status == 200, (route, await r.json())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", ["AAAA", "====", "%ff", "a.b", "-1", "a b", "é", "A" * 5, "\x00" * 12])
async def test_a_garbage_cursor_is_400(client: TestClient, cursor: str) -> None:
    for route in ROUTES:
        r = await client.get(f"{S}/{route}", params={"cursor": cursor}, headers=auth())
        body = await r.json()
        assert (r.status, body["code"], body["path"]) == (400, "INVALID_PARAMETER", "$query.cursor"), (route, body)


@pytest.mark.parametrize("cursor", ["99999999999999999999999999", "-5", "18446744073709551616"])
async def test_a_garbage_audit_cursor_is_400(client: TestClient, cursor: str) -> None:
    """The audit's cursor is a catalog offset: negative or beyond 8 bytes is 400, not an overflow."""
    r = await client.get(f"{S}/audit", params={"cursor": cursor}, headers=auth())
    body = await r.json()
    assert (r.status, body["code"], body["path"]) == (400, "INVALID_PARAMETER", "$query.cursor"), body


FORGED = [b"\xff" * 9, b"\xff" * 64, b"\x00" * 9, b"\x7f" + b"\xff" * 30, b"\xff" * 8 + b"\x00eve\x00",
          b"\xff" * 8 + b"\x01" + b"\xff" * 200]


@pytest.mark.parametrize("raw", FORGED)
async def test_a_forged_cursor_reads_only_the_users_or_segments_own_changes(client: TestClient, raw: bytes) -> None:
    """A well-formed cursor built by hand (any bytes past the key prefix) is a position in the
    user's (segment's) own changes: the page holds bob's changes of site s1 only (user history)
    and sales's of s1 only (segment history), never eve's, hr's or site s2's."""
    r = await client.get(f"{S}/users/bob/history", params={"cursor": _b64(raw), "limit": "500"}, headers=auth())
    body = await r.json()
    assert r.status == 200, body
    assert {(c["site_id"], c["user_id"]) for c in body["changes"]} <= {(SITE, "bob")}
    r = await client.get(f"{S}/segments/sales/history", params={"cursor": _b64(raw), "limit": "500"}, headers=auth())
    body = await r.json()
    assert r.status == 200, body
    assert {(c["site_id"], c["segment_id"]) for c in body["changes"]} <= {(SITE, "sales")}


async def test_without_a_cursor_the_reads_keep_to_their_user_and_segment(client: TestClient) -> None:
    """The positive side of the forged-cursor test: the other changes exist, and are not bob's."""
    r = await client.get(f"{S}/users/bob/history?limit=500", headers=auth())
    assert sorted((c["segment_id"], c["change_id"][-3:]) for c in (await r.json())["changes"]) == [
        ("hr", "065"), ("sales", "000"), ("sales", "001"), ("sales", "002")]
    r = await client.get(f"{S}/segments/sales/history?limit=500", headers=auth())
    assert sorted(c["user_id"] for c in (await r.json())["changes"]) == ["bob", "bob", "bob", "eve"]


@pytest.mark.parametrize("segment", ["x" * 300, "a/b", "\x00", " "])
async def test_a_segment_filter_that_is_no_id_is_400(client: TestClient, segment: str) -> None:
    """``?segment=`` names a segment: one no segment can have is 400 INVALID_ID at
    ``$query.segment`` (it answered 200 with no changes, as if the user had none)."""
    r = await client.get(f"{S}/users/bob/history", params={"segment": segment}, headers=auth())
    body = await r.json()
    assert (r.status, body["code"], body["path"]) == (400, "INVALID_ID", "$query.segment"), body


async def test_a_segment_filter_keeps_the_segments_changes(client: TestClient) -> None:
    r = await client.get(f"{S}/users/bob/history", params={"segment": "hr"}, headers=auth())
    body = await r.json()
    assert r.status == 200 and [c["segment_id"] for c in body["changes"]] == ["hr"], body
