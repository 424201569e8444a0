"""The large-change guard over HTTP, in process: two real API servers of processor/http (this
worker and a peer on loopback) over in-memory stores that split a site's users between them.

A rule deletion that removes 60 of 100 members is held back with 409 LARGE_CHANGE and the counts
of BOTH workers (a guard that looked only at its own users would see 30 and let it through);
confirming another count is refused with the new count; confirming the count produces the
command. The impact's sample names people (display name and e-mail from the stored profile).
The real broker and worker processes are in tests/integration/test_guarded_changes.py.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestClient

from processor.api.auth import make_token
from processor.catalog.commands import apply, decide
from processor.catalog.registry import CatalogRegistry
from processor.config import Settings
from processor.contract.models import Actor, Command
from processor.state.reads import Member
from processor.state.members import fact_entry
from processor.state.user_state import Fact, UserState, encode_state
from tests.support.api_double import InMemoryModel, served_pair

SECRET = "unit-test-secret-0123456789-abcdefghijkl"
SITE = "guard-site"
SALES = {"field": "department", "op": "equals", "value": "Sales"}
SENIOR = {"field": "profile_field_level", "op": "equals", "value": "Senior"}


def _user(i: int) -> UserState:
    """u000-u099 are members of sales; u000-u059 only through rule "dept", the rest also through "senior"."""
    st = UserState(SITE, f"u{i:03d}", profile={"firstname": f"First{i}", "lastname": "Last", "email": f"u{i}@ex.org",
                                               "department": "Sales" if i < 100 else "HR",
                                               "profile_field_level": "Senior" if i >= 60 else "Junior"})
    if i < 100:
        st.facts["sales"] = Fact(True, f"c{i}", "ADDED", "RULE_CREATED", "x", ("dept",), 1, 1)
    return st


class Scan:
    """A site scan over the double's users; iterating every user (a full scan) counts in ``store.scans``,
    reading one segment's member entries (a members page) does not."""

    def __init__(self, users: list[UserState], store: "Store") -> None:
        self._users = users
        self._store = store

    def users(self) -> Any:
        self._store.scans += 1
        return iter(self._users)

    def user_deleted_flags(self) -> Any:
        self._store.scans += 1
        return (u.deleted for u in self._users)

    def segment_members(self, segment_id: str, after: str = "") -> Any:
        return ((u.user_id, fact_entry(u.facts[segment_id]), encode_state(u)) for u in self._users
                if u.is_member(segment_id) and u.user_id > after)

    def member_segments(self) -> Any:
        return (s for u in self._users for s, f in u.facts.items() if f.member)

    def current(self) -> bool:
        return True


class Store:
    def __init__(self, users: list[UserState]) -> None:
        self._users = sorted(users, key=lambda u: u.user_id)
        self.scans = 0

    def owned_partitions(self) -> list[int]:
        return [0]

    def user(self, site_id: str, user_id: str) -> UserState | None:
        return next((u for u in self._users if u.user_id == user_id), None)

    def members(self, site_id: str, segment_id: str, after: str = "", limit: int = 50) -> list[Member]:
        return [Member(u.user_id, 1, ["dept"], "x") for u in self._users
                if u.is_member(segment_id) and u.user_id > after][:limit]

    def users(self, site_id: str, after: str = "", limit: int = 50) -> list[UserState]:
        return [u for u in self._users if u.user_id > after][:limit]

    def scan(self, site_id: str) -> Scan:
        return Scan(self._users, self)


def Model(users: list[UserState], url: str = "") -> InMemoryModel:  # noqa: N802 - used like the class it was
    """One worker's read model over :class:`Store` of ``users`` (also used by test_hostile_*.py)."""
    return InMemoryModel(Store(users), url)


def _seed(reg: CatalogRegistry, *extra: Command) -> None:
    cmds = [Command(f"c{i}", SITE, 1, Actor("a", ("site_admin",)), t, p) for i, (t, p) in enumerate([
        ("UpsertProfileField", {"shortname": "level", "name": "Level", "datatype": "TEXT", "options": []}),
        ("UpsertSegment", {"segment_id": "sales", "name": "Sales"}),
        ("EnableSegmentAutomation", {"segment_id": "sales"}),
        ("CreateRule", {"rule_id": "dept", "segment_id": "sales", "name": "Dept", "enabled": True,
                        "condition_json": json.dumps(SALES)}),
        ("CreateRule", {"rule_id": "senior", "segment_id": "sales", "name": "Senior", "enabled": True,
                        "condition_json": json.dumps({"all": [SALES, SENIOR]})}),
    ])] + list(extra)
    cat = reg.sites.setdefault(SITE, reg.site(SITE))
    for c in cmds:
        assert decide(cat, c).accepted, decide(cat, c)
        apply(cat, c)


@pytest.fixture
def settings() -> Iterator[Settings]:
    yield Settings(bootstrap_servers="127.0.0.1:9", admin_jwt_secret=SECRET)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[TestClient, InMemoryModel, InMemoryModel]]:
    users = [_user(i) for i in range(130)]
    peer = InMemoryModel(Store([u for u in users if u.user_id[-1] in "02468"]))
    me = InMemoryModel(Store([u for u in users if u.user_id[-1] not in "02468"]))
    async with served_pair(me, peer, settings) as client:
        for m in (me, peer):
            _seed(m.registry)
        yield client, me, peer


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(SECRET, 'alice', SITE, ['site_admin'])}"}


async def test_large_deletion_is_held_back_with_both_workers_counts_until_confirmed(api: Any) -> None:
    client, me, peer = api
    r = await client.post(f"/sites/{SITE}/rules", headers=auth(),
                          json={"rule_id": "hr", "segment_id": "sales", "condition": 'department == "HR"'})
    assert r.status == 202  # a new rule only adds (a segment's rules are alternatives): no scan at all
    assert me.store.scans == peer.store.scans == 0
    r = await client.delete(f"/sites/{SITE}/rules/senior", headers=auth())
    assert r.status == 202  # scanned: everyone "senior" matches is matched by "dept" too, nobody leaves
    assert me.store.scans == peer.store.scans == 1
    me.sent.clear()

    r = await client.delete(f"/sites/{SITE}/rules/dept", headers=auth())
    body = await r.json()
    assert r.status == 409, body
    assert body["code"] == "LARGE_CHANGE" and body["path"] == "$.confirm"
    imp = body["impact"]
    assert (imp["members"], imp["removed"], imp["added"]) == (100, 60, 0)  # u000-u059, from both workers
    assert body["confirm"] == {"removed": 60}
    seg = imp["segments"][0]
    assert (seg["segment_id"], seg["name"], seg["large"]) == ("sales", "Sales", True)
    assert seg["sample_removed"][0] == {"user_id": "u000", "name": "First0 Last", "email": "u0@ex.org"}
    assert len(seg["sample_removed"]) == 20
    assert body["threshold"] == {"large_change_min_removed": 50, "large_change_ratio": 0.1}
    assert "60" in body["message"] and '"removed": 60' in body["message"]
    assert me.sent == []  # nothing produced

    r = await client.delete(f"/sites/{SITE}/rules/dept", headers=auth(), json={"confirm": {"removed": 59}})
    body = await r.json()
    assert (r.status, body["code"], body["path"], body["confirm"], body["confirmed"]) == (
        409, "LARGE_CHANGE", "$.confirm.removed", {"removed": 60}, 59)
    assert me.sent == []

    r = await client.delete(f"/sites/{SITE}/rules/dept", headers=auth(), json={"confirm": {"removed": 60}})
    assert r.status == 202, await r.json()
    assert [(c.payload_type, c.payload) for c in me.sent] == [("DeleteRule", {"rule_id": "dept"})]


async def test_threshold_is_the_sites_setting(api: Any) -> None:
    """With large_change_min_removed 61 the same deletion (60 removed) is not large."""
    client, me, peer = api
    for m in (me, peer):
        apply(m.registry.sites[SITE], Command("s1", SITE, 1, Actor("a", ("site_admin",)), "SetSiteSettings",
                                              {"large_change_min_removed": 61, "large_change_ratio": None}))
    r = await client.get(f"/sites/{SITE}/settings", headers=auth())
    assert (await r.json())["large_change_min_removed"] == 61
    r = await client.delete(f"/sites/{SITE}/rules/dept", headers=auth())
    assert r.status == 202, await r.json()


async def test_disable_with_removal_and_segment_delete_are_guarded(api: Any) -> None:
    client, me, peer = api
    r = await client.post(f"/sites/{SITE}/segments/sales/automation", headers=auth(),
                          json={"enabled": False, "remove_members": True})
    body = await r.json()
    assert (r.status, body["impact"]["removed"], body["impact"]["members"]) == (409, 100, 100)
    r = await client.post(f"/sites/{SITE}/segments/sales/automation", headers=auth(),
                          json={"enabled": False, "remove_members": False})
    assert r.status == 202  # members stay: nothing to guard
    r = await client.delete(f"/sites/{SITE}/segments/sales", headers=auth())
    body = await r.json()
    assert (r.status, body["impact"]["removed"]) == (409, 100)
    r = await client.delete(f"/sites/{SITE}/segments/sales", headers=auth(), json={"confirm": {"removed": 100}})
    assert r.status == 202


async def test_bad_confirmations_are_400(api: Any) -> None:
    client, _, _ = api
    for bad, path in (({"confirm": 60}, "$.confirm"), ({"confirm": {"removed": -1}}, "$.confirm.removed"),
                      ({"confirm": {"removed": True}}, "$.confirm.removed"),
                      ({"confirm": {"removed": 1, "x": 2}}, "$.confirm"), ({"other": 1}, "$.other")):
        r = await client.delete(f"/sites/{SITE}/rules/dept", headers=auth(), json=bad)
        body = await r.json()
        assert (r.status, body["path"]) == (400, path), (bad, body)
    r = await client.delete(f"/sites/{SITE}/rules/dept", headers={**auth(), "Content-Type": "application/json"},
                            data=b"null")  # a body that is not an object is not "no body"
    assert (r.status, (await r.json())["code"]) == (400, "INVALID_BODY")


async def test_rules_impact_combines_a_whole_file(api: Any) -> None:
    """Two edits of one segment's rules previewed together: their combined effect, per segment."""
    client, me, _ = api
    narrow = {"all": [SALES, {"field": "email", "op": "ends_with", "value": "0@ex.org"}]}
    r = await client.post(f"/sites/{SITE}/rules:impact", headers=auth(), json={"rules": [
        {"rule_id": "dept", "segment_id": "sales", "condition": narrow},  # 100 -> u000, u010, ... u090
        {"rule_id": "senior", "segment_id": "sales", "condition": SALES},  # ... and back to all 100 + nobody new
        {"rule_id": "bad", "segment_id": "nope", "condition": SALES},
    ]})
    body = await r.json()
    assert r.status == 200, body
    assert [(x["rule_id"], x["action"], x["valid"]) for x in body["rules"]] == [
        ("dept", "update", True), ("senior", "update", True), ("bad", "create", False)]
    assert body["rules"][2]["code"] == "UNKNOWN_SEGMENT"
    assert [(s["segment_id"], s["added"], s["removed"]) for s in body["segments"]] == [("sales", 0, 0)]
    assert me.sent == []
