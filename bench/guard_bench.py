"""What the large-change guard adds to an API write (docs/api.md#guarded-changes). Not a test.

    .venv/bin/python bench/guard_bench.py [--users 100000] [--repeat 3]

Two API servers of processor/http in this process (this worker and a peer on loopback, the
real gathering code), each over an in-memory store holding half of ``--users`` stored users of
one site (real ``UserState`` objects, scanned through the real time-sliced scanner). The site:
one managed segment with two rules, every user a member, a quarter of them matched only by the
rule that is deleted. Measured, same run, each ``--repeat`` times (median):

  baseline  POST /sites/s/rules/preview of that deletion's effect (the preview an admin runs):
            one full scan per worker;
  create    POST /sites/s/rules (a rule that only adds: the guard needs no scan);
  small     DELETE of a rule in a segment with fewer members than large_change_min_removed
            (one bounded members page per worker, no scan);
  guarded   DELETE /sites/s/rules/dept answered 409 LARGE_CHANGE (the impact scan);
  confirmed the same DELETE with {"confirm": {"removed": N}} (a second scan, then 202).

Reported as ratios to the baseline. Writes bench/results/guard_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp.test_utils import TestClient  # noqa: E402

from processor.api.auth import make_token  # noqa: E402
from processor.catalog.commands import apply, decide  # noqa: E402
from processor.catalog.registry import CatalogRegistry  # noqa: E402
from processor.config import Settings  # noqa: E402
from processor.contract.models import Actor, Command  # noqa: E402
from processor.state.reads import Member  # noqa: E402
from processor.state.members import fact_entry  # noqa: E402
from processor.state.user_state import Fact, UserState, encode_state  # noqa: E402
from tests.support.api_double import InMemoryModel, served_pair  # noqa: E402

SECRET = "bench-secret-0123456789-abcdefghijklmnop"
SITE = "s"


class Scan:
    def __init__(self, users: list[UserState]) -> None:
        self._users = users

    def users(self) -> Any:
        return iter(self._users)

    def user_deleted_flags(self) -> Any:
        return (u.deleted for u in self._users)

    def member_segments(self) -> Any:
        return (s for u in self._users for s, f in u.facts.items() if f.member)

    def segment_members(self, segment_id: str, after: str = "") -> Any:
        return ((u.user_id, fact_entry(u.facts[segment_id]), encode_state(u)) for u in self._users
                if u.is_member(segment_id) and u.user_id > after)

    def current(self) -> bool:
        return True


class Store:
    def __init__(self, users: list[UserState]) -> None:
        self._users = users
        self._members = {seg: [u.user_id for u in users if u.is_member(seg)] for seg in ("sales", "tiny")}

    def owned_partitions(self) -> list[int]:
        return [0]

    def user(self, site_id: str, user_id: str) -> UserState | None:
        return None

    def members(self, site_id: str, segment_id: str, after: str = "", limit: int = 50) -> list[Member]:
        ids = [u for u in self._members.get(segment_id, []) if u > after][:limit]
        return [Member(u, 1, ["dept"], "x") for u in ids]

    def users(self, site_id: str, after: str = "", limit: int = 50) -> list[UserState]:
        return []

    def scan(self, site_id: str) -> Scan:
        return Scan(self._users)


SALES = {"field": "department", "op": "equals", "value": "Sales"}


def seed(reg: CatalogRegistry) -> None:
    cat = reg.sites.setdefault(SITE, reg.site(SITE))
    for i, (t, p) in enumerate([
        ("UpsertSegment", {"segment_id": "sales", "name": "Sales"}),
        ("UpsertSegment", {"segment_id": "tiny", "name": "Tiny"}),
        ("EnableSegmentAutomation", {"segment_id": "sales"}),
        ("EnableSegmentAutomation", {"segment_id": "tiny"}),
        ("CreateRule", {"rule_id": "dept", "segment_id": "sales", "name": "Dept", "enabled": True,
                        "condition_json": json.dumps(SALES)}),
        ("CreateRule", {"rule_id": "city", "segment_id": "sales", "name": "City", "enabled": True,
                        "condition_json": json.dumps({"field": "city", "op": "in", "value": ["Paris", "Oslo", "Lima"]})}),
        ("CreateRule", {"rule_id": "t1", "segment_id": "tiny", "name": "T", "enabled": True,
                        "condition_json": json.dumps({"field": "idnumber", "op": "equals", "value": "7"})}),
    ]):
        c = Command(f"c{i}", SITE, 1, Actor("a", ("site_admin",)), t, p)
        assert decide(cat, c).accepted, decide(cat, c)
        apply(cat, c)


def users(n: int) -> list[UserState]:
    cities = ("Paris", "Oslo", "Lima", "Pune")  # a quarter (Pune) only through "dept"
    out = []
    for i in range(n):
        st = UserState(SITE, f"u{i:07d}", profile={
            "department": "Sales", "city": cities[i % 4], "firstname": f"F{i}", "lastname": "L",
            "email": f"u{i}@example.org", "idnumber": "7" if i < 10 else str(i), "lang": "en"})
        st.facts["sales"] = Fact(True, f"c{i}", "ADDED", "RULE_CREATED", "x", ("dept",), 1, 1)
        if i < 10:
            st.facts["tiny"] = Fact(True, f"t{i}", "ADDED", "RULE_CREATED", "x", ("t1",), 1, 1)
        out.append(st)
    return out


async def run(n: int, repeat: int) -> dict[str, Any]:
    settings = Settings(bootstrap_servers="127.0.0.1:9", admin_jwt_secret=SECRET, scan_timeout_s=600)
    everyone = users(n)
    me = InMemoryModel(Store(everyone[0::2]), log_name="bench")
    peer = InMemoryModel(Store(everyone[1::2]), log_name="bench")
    async with served_pair(me, peer, settings) as client:
        for m in (me, peer):
            seed(m.registry)
        return await measure(client, n, repeat)


async def measure(client: TestClient, n: int, repeat: int) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {make_token(SECRET, 'bench', SITE, ['site_admin'], ttl_s=3600)}"}
    removed = n // 4

    async def timed(method: str, path: str, body: Any, want: int) -> float:
        t = time.perf_counter()
        r = await client.request(method, path, headers=auth, json=body)
        assert r.status == want, (method, path, r.status, await r.text())
        await r.read()
        return time.perf_counter() - t

    cases = {
        "baseline": ("POST", f"/sites/{SITE}/rules/preview",
                     {"segment_id": "sales", "rule_id": "dept", "condition": {"field": "city", "op": "in",
                                                                              "value": ["Paris", "Oslo", "Lima"]}}, 200),
        "create": ("POST", f"/sites/{SITE}/rules", {"rule_id": "new", "segment_id": "sales", "condition": SALES}, 202),
        "small": ("DELETE", f"/sites/{SITE}/rules/t1", None, 202),
        "guarded": ("DELETE", f"/sites/{SITE}/rules/dept", None, 409),
        "confirmed": ("DELETE", f"/sites/{SITE}/rules/dept", {"confirm": {"removed": removed}}, 202),
    }
    out: dict[str, Any] = {"users": n, "repeat": repeat, "seconds": {}}
    for name, (method, path, body, want) in cases.items():
        out["seconds"][name] = statistics.median([await timed(method, path, body, want) for _ in range(repeat)])
    base = out["seconds"]["baseline"]
    out["ratio_to_preview"] = {k: round(v / base, 3) for k, v in out["seconds"].items()}
    out["seconds"] = {k: round(v, 4) for k, v in out["seconds"].items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    res = asyncio.run(run(a.users, a.repeat))
    print(json.dumps(res, indent=2))
    dest = ROOT / "bench" / "results" / "guard_bench.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
