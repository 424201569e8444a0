"""The history index's pure core (processor/history): ingest, retention, queries, audit join.

Every expectation is built here from the changes and commands the test made (a plain fold),
never from the index's own output. The store is a real RocksDB (rocksdict), as in the worker.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.catalog.commands import BackfillPlan
from processor.catalog.entry import CatalogEntry
from processor.contract.models import Actor, Command, MembershipChange
from processor.history import keys as K
from processor.history.overlay import Overlay
from processor.history.reads import BadCursor, HistoryReads
from processor.history.summary import summarize
from processor.history.times import BadInstant, parse_instant
from processor.history.writer import Retention, Writer

DAY = K.DAY_MS
NOW = 1_790_000_000_000  # 2026-09-21
SITE = "s1"


class Index:
    """A writer and reads over one RocksDB, committing like the edge does (one batch per call)."""

    def __init__(self, path: Path, retention: Retention = Retention()) -> None:
        from rocksdict import Options, Rdict

        self.db = Rdict(str(path), Options(raw_mode=True))
        self.retention = retention
        self.reads = HistoryReads(lambda: self.db, retention)

    def write(self, fn: Any) -> Any:
        from rocksdict import WriteBatch

        ov = Overlay(self.db)
        out = fn(Writer(ov, self.retention))
        wb = WriteBatch(raw_mode=True)
        for k, v in ov.ops():
            wb.delete(k) if v is None else wb.put(k, v)
        self.db.write(wb)
        return out

    def add(self, changes: list[MembershipChange], now: int = NOW) -> int:
        return self.write(lambda w: sum(w.add_change(c, now) for c in changes))

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    ix = Index(tmp_path / "h")
    yield ix
    ix.close()


_n = [0]


def ch(user: str, seg: str, change: str, at: int, cause: str = "USER_UPDATED", cause_id: str | None = None,
       site: str = SITE, evidence: tuple[tuple[str, str], ...] | None = None) -> MembershipChange:
    _n[0] += 1
    return MembershipChange(f"{_n[0]:032x}", site, seg, user, change, cause, cause_id or f"ev-{_n[0]}",
                            ("r1",) if change == "ADDED" else (), at - 5, at, evidence)


def entry(cmd_id: str, ptype: str, payload: dict[str, Any], at: int, status: str = "ACCEPTED",
          actor: str = "alice", site: str = SITE) -> CatalogEntry:
    cmd = Command(cmd_id, site, at - 10, Actor(actor, ("site_admin",)), ptype, payload)
    return CatalogEntry(cmd, status, None if status == "ACCEPTED" else "FORBIDDEN", None, at, 0, 0,
                        BackfillPlan("RULE_CREATED", ()) if status == "ACCEPTED" else None)


def all_pages(fetch: Any, limit: int) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        page = fetch(limit, cursor)
        out += page.items
        cursor = page.next_cursor
        if not cursor:
            return out


def fold(changes: list[MembershipChange]) -> dict[str, set[str]]:
    members: dict[str, set[str]] = {}
    seen = set()
    for c in changes:
        if c.change_id in seen:
            continue
        seen.add(c.change_id)
        group = members.setdefault(c.segment_id, set())
        group.add(c.user_id) if c.change == "ADDED" else group.discard(c.user_id)
    return members


# ------------------------------------------------------------------- ingest
def test_a_reemitted_change_is_indexed_once(index: Index) -> None:
    a = ch("bob", "sales", "ADDED", NOW - 1000, "RULE_CREATED", "cmd-1")
    assert index.add([a, a]) == 1
    assert index.add([a]) == 0  # a later batch (a restart re-reading, a crash re-emission)
    hist = index.reads.user_history(index.db, SITE, "bob", 50)
    assert [h["change_id"] for h in hist.items] == [a.change_id]
    assert index.reads.series(index.db, SITE, "sales", NOW, NOW)[-1]["size"] == 1
    index.write(lambda w: w.add_catalog(7, entry("cmd-1", "CreateRule", {
        "rule_id": "r1", "segment_id": "sales", "name": "R", "condition_json": "{}", "enabled": True}, NOW - 2000),
        NOW))
    (cmd,) = index.reads.audit(index.db, SITE, 10).items
    assert cmd["impact"] == {"added": 1, "removed": 0}


def test_user_history_is_newest_first_with_every_field_and_pages_cover_it_once(index: Index) -> None:
    made = [ch("bob", f"seg{i % 3}", "ADDED" if i % 2 == 0 else "REMOVED", NOW - 100_000 + i * 10,
               evidence=(("department", json.dumps(f"d{i}")),)) for i in range(37)]
    random.Random(3).shuffle(made)  # arrival order is not time order
    index.add(made)
    index.add([ch("bobby", "seg0", "ADDED", NOW - 5)])  # a user whose id starts with "bob"
    got = all_pages(lambda n, c: index.reads.user_history(index.db, SITE, "bob", n, c), 5)
    want = sorted(made, key=lambda c: (c.emitted_at, c.change_id), reverse=True)
    assert [g["change_id"] for g in got] == [c.change_id for c in want]
    first, c0 = got[0], want[0]
    assert first == {"change_id": c0.change_id, "site_id": SITE, "user_id": "bob", "segment_id": c0.segment_id,
                     "change": c0.change, "cause_kind": c0.cause_kind, "cause_id": c0.cause_id,
                     "matched_rule_ids": list(c0.matched_rule_ids), "occurred_at": c0.occurred_at,
                     "emitted_at": c0.emitted_at, "evidence": dict(c0.evidence or ()), "actor": None}


def test_segment_history_window_and_pages(index: Index) -> None:
    made = [ch(f"u{i}", "sales", "ADDED", NOW - 50 * DAY + i * DAY // 2) for i in range(60)]
    made += [ch(f"u{i}", "hr", "ADDED", NOW - 10 * DAY + i) for i in range(5)]
    index.add(made)
    since, until = NOW - 40 * DAY, NOW - 30 * DAY
    got = all_pages(lambda n, c: index.reads.segment_history(index.db, SITE, "sales", n, c, since, until), 4)
    want = [c for c in made if c.segment_id == "sales" and since <= c.emitted_at < until]
    assert [g["change_id"] for g in got] == [c.change_id for c in sorted(want, key=lambda c: -c.emitted_at)]
    assert len(want) == 20


def test_a_forged_cursor_is_refused_or_stays_in_its_prefix(index: Index) -> None:
    index.add([ch("bob", "sales", "ADDED", NOW - 10), ch("eve", "sales", "ADDED", NOW - 9)])
    with pytest.raises(BadCursor):
        index.reads.user_history(index.db, SITE, "bob", 5, "AA")
    page = index.reads.user_history(index.db, SITE, "bob", 5, "____________")
    assert {i["user_id"] for i in page.items} <= {"bob"}


# ---------------------------------------------------------------- retention
def test_the_per_user_limit_keeps_the_newest_and_refuses_pruned_reemissions(tmp_path: Path) -> None:
    ix = Index(tmp_path / "cap", Retention(90, 3))
    made = [ch("bob", "sales", "ADDED" if i % 2 == 0 else "REMOVED", NOW - 1000 + i) for i in range(7)]
    ix.add(made[:4])
    ix.add(made[4:])
    kept = ix.reads.user_history(ix.db, SITE, "bob", 50).items
    assert [k["change_id"] for k in kept] == [c.change_id for c in reversed(made[-3:])]
    assert ix.reads.user_has_pruned(ix.db, SITE, "bob")
    assert ix.add([made[0], made[5]]) == 0  # pruned and kept ones, re-emitted: neither comes back
    seg = ix.reads.segment_history(ix.db, SITE, "sales", 50).items
    assert [s["change_id"] for s in seg] == [k["change_id"] for k in kept]
    # the size series does not depend on what the per-user limit removed
    assert ix.reads.series(ix.db, SITE, "sales", NOW, NOW)[-1]["size"] == len(fold(made).get("sales", ()))
    ix.close()


def test_age_expiry_drops_changes_and_keeps_the_series_exact(tmp_path: Path) -> None:
    ix = Index(tmp_path / "age", Retention(30, 1000))
    rng = random.Random(7)
    made = []
    for i in range(200):
        user = f"u{rng.randrange(40)}"
        at = NOW - rng.randrange(60) * DAY - rng.randrange(DAY)
        made.append((user, at))
    made.sort(key=lambda x: x[1])
    state: dict[str, bool] = {}
    changes = []
    for user, at in made:
        kind = "REMOVED" if state.get(user) else "ADDED"
        state[user] = not state.get(user)
        changes.append(ch(user, "sales", kind, at))
    ix.add(changes, now=NOW - 60 * DAY)  # indexed back then (nothing was old yet)
    assert ix.write(lambda w: w.expire_changes(NOW, budget=10_000)) > 0
    ix.write(lambda w: w.expire_aggregates(NOW))
    horizon = NOW - 30 * DAY
    kept = all_pages(lambda n, c: ix.reads.segment_history(ix.db, SITE, "sales", n, c), 50)
    assert sorted(k["change_id"] for k in kept) == sorted(c.change_id for c in changes if c.emitted_at >= horizon)
    series = ix.reads.series(ix.db, SITE, "sales", horizon, NOW)
    for point in series:  # the size at the end of each day, from all 200 changes (expired ones too)
        end = parse_instant(point["date"], end_of_day=True)
        assert point["size"] == len(fold([c for c in changes if c.emitted_at <= end]).get("sales", ())), point
    assert ix.add([changes[0]]) == 0  # an expired change re-emitted stays out
    assert not list(ix.db.keys(from_key=K.D + b"\x00"))[:0]
    ix.close()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 20 * 24)), min_size=1, max_size=60),
       st.integers(1, 6), st.integers(0, 3))
def test_any_ingest_order_with_duplicates_matches_a_plain_fold(tmp_path_factory: Any, steps: Any, cap: int,
                                                                dups: int) -> None:
    """Per user the changes alternate (as the engine emits them); they arrive shuffled, some twice,
    in several batches. The series matches the fold, each user's kept history is its newest
    ``cap`` changes, and the segment history holds exactly the kept changes of the segment."""
    ix = Index(tmp_path_factory.mktemp("prop") / "h", Retention(90, cap))
    last: dict[tuple[str, str], bool] = {}
    changes = []
    for user_n, seg_n, hour in sorted(steps, key=lambda s: s[2]):
        u, s = f"u{user_n}", f"g{seg_n}"
        kind = "REMOVED" if last.get((u, s)) else "ADDED"
        last[(u, s)] = kind == "ADDED"
        changes.append(ch(u, s, kind, NOW - 20 * DAY + hour * 3_600_000 + len(changes)))
    arrival = changes + changes[:dups]
    random.Random(len(steps)).shuffle(arrival)
    for i in range(0, len(arrival), 7):
        ix.add(arrival[i:i + 7])
    members = fold(changes)
    for seg in {c.segment_id for c in changes}:
        assert ix.reads.series(ix.db, SITE, seg, NOW, NOW)[-1]["size"] == len(members.get(seg, ())), seg
    kept_ids = set()
    for user in {c.user_id for c in changes}:
        mine = sorted((c for c in changes if c.user_id == user), key=lambda c: (c.emitted_at, c.change_id))
        got = [h["change_id"] for h in ix.reads.user_history(ix.db, SITE, user, 500).items]
        assert got == [c.change_id for c in reversed(mine[-cap:])]
        kept_ids |= set(got)
    for seg in {c.segment_id for c in changes}:
        got = {h["change_id"] for h in ix.reads.segment_history(ix.db, SITE, seg, 500).items}
        assert got == {c.change_id for c in changes if c.segment_id == seg} & kept_ids
    ix.close()


# -------------------------------------------------------------------- audit
def test_audit_joins_commands_with_their_impact_and_actor(index: Index) -> None:
    rule = {"rule_id": "r1", "segment_id": "sales", "name": "Sales", "enabled": True,
            "condition_json": json.dumps({"field": "department", "op": "equals", "value": "Sales"})}
    index.write(lambda w: [
        w.add_catalog(1, entry("c-create", "CreateRule", rule, NOW - 300), NOW),
        w.add_catalog(2, entry("c-denied", "DeleteRule", {"rule_id": "r1"}, NOW - 200, "REJECTED", "mallory"), NOW),
        w.add_catalog(3, entry("c-off", "DisableSegmentAutomation", {"segment_id": "sales", "remove_members": True},
                               NOW - 100, actor="bob"), NOW)])
    made = [ch(f"u{i}", "sales", "ADDED", NOW - 250 + i, "RULE_CREATED", "c-create") for i in range(5)]
    made += [ch(f"u{i}", "sales", "REMOVED", NOW - 90 + i, "SEGMENT_AUTOMATION_DISABLED", "c-off") for i in range(3)]
    made += [ch("u9", "sales", "ADDED", NOW - 80, "USER_UPDATED", "c-off")]  # an event id that looks like one
    index.add(made + made[:2])
    got = index.reads.audit(index.db, SITE, 10).items
    assert [(g["command_id"], g["status"], g["actor"]["user_id"], g["impact"]) for g in got] == [
        ("c-off", "ACCEPTED", "bob", {"added": 0, "removed": 3}),
        ("c-denied", "REJECTED", "mallory", {"added": 0, "removed": 0}),
        ("c-create", "ACCEPTED", "alice", {"added": 5, "removed": 0})]
    assert got[0]["summary"] == "disable automation of sales, removing its members"
    assert got[2]["summary"] == 'create rule r1 in sales: department equals "Sales"'
    hist = index.reads.user_history(index.db, SITE, "u0", 10).items
    assert [(h["cause_id"], h["actor"]) for h in hist] == [
        ("c-off", {"user_id": "bob", "roles": ["site_admin"]}), ("c-create", {"user_id": "alice", "roles": ["site_admin"]})]
    assert index.reads.user_history(index.db, SITE, "u9", 10).items[0]["actor"] is None  # not a command cause


def test_audit_pages_and_window(index: Index) -> None:
    index.write(lambda w: [w.add_catalog(i, entry(f"c{i}", "UpsertSegment", {"segment_id": f"g{i}", "name": "G"},
                                                  NOW - 1000 + i * 10), NOW) for i in range(23)])
    got = all_pages(lambda n, c: index.reads.audit(index.db, SITE, n, c), 5)
    assert [g["command_id"] for g in got] == [f"c{i}" for i in reversed(range(23))]
    some = index.reads.audit(index.db, SITE, 50, None, NOW - 1000 + 50, NOW - 1000 + 100).items
    assert [g["command_id"] for g in some] == ["c9", "c8", "c7", "c6", "c5"]
    other = index.reads.audit(index.db, "s2", 50).items
    assert other == []


def test_rule_versions_as_of_a_time_and_a_deleted_segment(index: Index) -> None:
    def rule(cond: str, seg: str = "sales") -> dict[str, Any]:
        return {"rule_id": "r1", "segment_id": seg, "name": "R", "enabled": True,
                "condition_json": json.dumps({"field": "department", "op": "equals", "value": cond})}

    index.write(lambda w: [
        w.add_catalog(1, entry("c1", "CreateRule", rule("Sales"), NOW - 300), NOW),
        w.add_catalog(2, entry("c2", "UpdateRule", rule("Sales EMEA"), NOW - 200), NOW),
        w.add_catalog(3, entry("c3", "UpdateRule", rule("Nope"), NOW - 150, "REJECTED"), NOW),
        w.add_catalog(4, entry("c4", "DeleteSegment", {"segment_id": "sales"}, NOW - 100), NOW)])

    def value(at: int) -> list[str]:
        return [json.loads(r["condition_json"])["value"] for r in index.reads.rules_as_of(index.db, SITE, "sales", at)]

    assert value(NOW - 301) == []
    assert value(NOW - 250) == ["Sales"]
    assert value(NOW - 160) == ["Sales EMEA"]  # the rejected update changed nothing
    assert value(NOW - 50) == []  # deleted with its segment


def test_expired_audit_records_and_superseded_rule_versions_go(tmp_path: Path) -> None:
    ix = Index(tmp_path / "a", Retention(10, 100))
    old, new = NOW - 20 * DAY, NOW - DAY

    def rule(v: str) -> dict[str, Any]:
        return {"rule_id": "r1", "segment_id": "g", "name": "R", "enabled": True,
                "condition_json": json.dumps({"field": "city", "op": "equals", "value": v})}

    ix.write(lambda w: [w.add_catalog(1, entry("c1", "CreateRule", rule("A"), old - 10), old),
                        w.add_catalog(2, entry("c2", "UpdateRule", rule("B"), old), old),
                        w.add_catalog(3, entry("c3", "UpsertSegment", {"segment_id": "g", "name": "G"}, new), old)])
    ix.write(lambda w: w.expire_aggregates(NOW))
    assert [a["command_id"] for a in ix.reads.audit(ix.db, SITE, 10).items] == ["c3"]
    # the version in force at the horizon stays (B); the one it superseded before the horizon goes
    assert [json.loads(r["condition_json"])["value"] for r in ix.reads.rules_as_of(ix.db, SITE, "g", NOW)] == ["B"]
    assert len(list(ix.db.keys(from_key=K.R))) == 1
    ix.close()


# ------------------------------------------------------------------ helpers
def test_overlay_reads_its_pending_writes_in_key_order(index: Index) -> None:
    index.db[b"p1"] = b"x"
    index.db[b"p3"] = b"x"
    index.db[b"p5"] = b"x"
    ov = Overlay(index.db)
    ov.put(b"p2", b"y")
    ov.delete(b"p3")
    ov.put(b"p6", b"y")
    ov.put(b"q", b"y")
    assert list(ov.keys(b"p")) == [b"p1", b"p2", b"p5", b"p6"]
    assert ov.get(b"p3") is None and ov.get(b"p2") == b"y" and ov.get(b"p1") == b"x"


@pytest.mark.parametrize("text,end,want", [
    ("1790000000000", False, 1_790_000_000_000),
    ("2026-11-20", False, 1_795_132_800_000),
    ("2026-11-20", True, 1_795_132_800_000 + DAY - 1),
    ("2026-11-20T01:00:00+01:00", False, 1_795_132_800_000),
    ("2026-11-20T00:00:00Z", True, 1_795_132_800_000),
])
def test_instants(text: str, end: bool, want: int) -> None:
    assert parse_instant(text, end) == want


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "-5", "99999999999999999", "2026-11-20T25:00"])
def test_bad_instants(text: str) -> None:
    with pytest.raises(BadInstant):
        parse_instant(text)


def test_summaries() -> None:
    assert summarize("UpsertProfileField", {"shortname": "level", "datatype": "MENU", "options": ["A", "B"]}) \
        == "profile field level (MENU; options A, B)"
    assert summarize("UpdateRule", {"rule_id": "r", "segment_id": "g", "enabled": False,
                                    "condition_json": "not json"}) == "update rule r in g (disabled): not json"
    assert len(summarize("UpsertSegment", {"segment_id": "g", "name": "x" * 1000})) == 300


def test_the_series_counts_back_from_the_live_size_when_the_index_missed_the_start(tmp_path: Path) -> None:
    """A worker added later indexes only what the topic still holds: counted forward its sizes
    would start from 0, counted back from the member count now they are right."""
    changes = [ch(f"u{i}", "sales", "ADDED", NOW - 20 * DAY + i) for i in range(10)]  # before the topic's start
    changes += [ch(f"u{i}", "sales", "REMOVED", NOW - 5 * DAY + i) for i in range(3)]
    changes += [ch("new", "sales", "ADDED", NOW - 2 * DAY)]
    late = Index(tmp_path / "late")
    late.add(changes[10:])  # the first ten are gone from the topic
    live = len(fold(changes)["sales"])
    assert live == 8
    series = late.reads.series(late.db, SITE, "sales", NOW - 10 * DAY, NOW, now_size=live)
    for point in series:
        end = parse_instant(point["date"], end_of_day=True)
        assert point["size"] == len(fold([c for c in changes if c.emitted_at <= end])["sales"]), point
    forward = late.reads.series(late.db, SITE, "sales", NOW - 10 * DAY, NOW)
    assert forward[-1]["size"] == -2  # what counting forward from an incomplete index gives
    late.close()


def test_a_rule_defined_before_the_retention_is_kept_for_explains(tmp_path: Path) -> None:
    """A fresh index reads the whole catalog log: a rule created before the retention limit and
    never changed is still the rule in force, though its audit record is past the limit."""
    ix = Index(tmp_path / "fresh", Retention(30, 100))
    rule = {"rule_id": "r1", "segment_id": "g", "name": "R", "enabled": True,
            "condition_json": json.dumps({"field": "city", "op": "equals", "value": "Oslo"})}
    ix.write(lambda w: w.add_catalog(1, entry("c1", "CreateRule", rule, NOW - 100 * DAY), NOW))
    assert ix.reads.audit(ix.db, SITE, 10).items == []
    assert [r["rule_id"] for r in ix.reads.rules_as_of(ix.db, SITE, "g", NOW)] == ["r1"]
    ix.write(lambda w: w.expire_aggregates(NOW))
    assert [r["rule_id"] for r in ix.reads.rules_as_of(ix.db, SITE, "g", NOW)] == ["r1"]
    ix.close()
