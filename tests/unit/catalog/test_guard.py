"""The large-change guard's pure part (processor/catalog/guard.py): the threshold's exact edges,
the decision with and without a confirmation, and which segments a change may shrink."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.catalog.commands import apply, decide
from processor.catalog.guard import (
    CHANGED,
    PROCEED,
    UNCONFIRMED,
    Evaluator,
    SegmentImpact,
    is_large,
    judge,
    merge,
    person,
    plan_impact,
)
from processor.catalog.model import SiteCatalog
from processor.catalog.settings import SiteSettings
from processor.contract.models import Actor, Command

DEFAULT = SiteSettings()


@pytest.mark.parametrize("members,removed,large", [
    (500, 50, False),  # exactly 10%: not MORE than 10%
    (499, 50, True),  # 10.02%
    (1000, 100, False), (1000, 101, True),
    (100, 49, False),  # 49%, but fewer than 50 people
    (100, 50, True),  # 50 people, 50%
    (60, 60, True),  # everyone
    (49, 49, False),  # a small segment emptied: under 50 people
    (0, 0, False),
])
def test_default_threshold_edges(members: int, removed: int, large: bool) -> None:
    assert is_large(members, removed, DEFAULT) is large


def test_ratio_is_compared_as_the_decimal_written() -> None:
    """0.29 x 100 is 28.999999999999996 in binary floating point; 29 of 100 is exactly 29%: not more."""
    assert 0.29 * 100 < 29  # what a float comparison would get wrong
    s = SiteSettings(large_change_min_removed=0, large_change_ratio=0.29)
    assert not is_large(100, 29, s)
    assert is_large(100, 30, s)
    assert is_large(1, 1, SiteSettings(0, 0.0)) and not is_large(0, 0, SiteSettings(0, 0.0))
    assert not is_large(10, 10, SiteSettings(0, 1.0))  # ratio 1: nothing is more than all members


@given(members=st.integers(0, 10**6), removed=st.integers(0, 10**6), n=st.integers(0, 10**4),
       pct=st.integers(0, 100))
def test_threshold_matches_integer_arithmetic(members: int, removed: int, n: int, pct: int) -> None:
    """For ratios of whole percents the rule is removed >= n and 100 x removed > pct x members."""
    s = SiteSettings(n, pct / 100)
    assert is_large(members, removed, s) == (removed >= n and 100 * removed > pct * members)


def _imp(seg: str, members: int, removed: int, added: int = 0) -> SegmentImpact:
    return SegmentImpact(seg, members, added, removed)


def test_judge() -> None:
    small, big = _imp("a", 1000, 10), _imp("b", 200, 60, 5)
    assert judge([small], DEFAULT, None).outcome == PROCEED
    v = judge([small, big], DEFAULT, None)
    assert (v.outcome, v.removed, v.added, v.members, v.large) == (UNCONFIRMED, 70, 5, 1200, ("b",))
    assert judge([small, big], DEFAULT, 70).outcome == PROCEED  # the total the admin saw
    assert judge([small, big], DEFAULT, 60).outcome == CHANGED  # the large segment's alone is not the total
    assert judge([small, big], DEFAULT, 71).outcome == CHANGED
    assert judge([small], DEFAULT, 999).outcome == PROCEED  # not large: a stale confirmation does not matter


def _cmd(ptype: str, **payload: object) -> Command:
    return Command(f"c-{ptype}", "s", 1, Actor("a", ("site_admin",)), ptype, dict(payload))


def _site() -> SiteCatalog:
    cat = SiteCatalog("s")
    for c in (_cmd("UpsertSegment", segment_id="sales", name="Sales"),
              _cmd("UpsertSegment", segment_id="hr", name="HR"),
              _cmd("UpsertSegment", segment_id="off", name="Off"),
              _cmd("EnableSegmentAutomation", segment_id="sales"),
              _cmd("EnableSegmentAutomation", segment_id="hr"),
              _cmd("CreateRule", rule_id="r1", segment_id="sales", name="R1", enabled=True,
                   condition_json=json.dumps({"field": "department", "op": "equals", "value": "Sales"})),
              _cmd("CreateRule", rule_id="r2", segment_id="sales", name="R2", enabled=True,
                   condition_json=json.dumps({"field": "city", "op": "equals", "value": "Paris"}))):
        assert decide(cat, c).accepted
        apply(cat, c)
    return cat


RULE = json.dumps({"field": "city", "op": "equals", "value": "Lyon"})


def _targets(cat: SiteCatalog, *cmds: Command) -> list[tuple[str, list[str] | None, bool]]:
    targets, _ = plan_impact(cat, list(cmds))
    return [(t.segment_id, None if t.rules is None else [r for r, _ in t.rules], t.may_remove) for t in targets]


def test_targets_of_each_guarded_command() -> None:
    cat = _site()
    before = (dict(cat.rules), dict(cat.segments), cat.active)
    assert _targets(cat, _cmd("CreateRule", rule_id="r3", segment_id="sales", name="R3", enabled=True,
                              condition_json=RULE)) == [("sales", ["r1", "r2", "r3"], False)]
    assert _targets(cat, _cmd("UpdateRule", rule_id="r2", segment_id="sales", name="R2", enabled=True,
                              condition_json=RULE)) == [("sales", ["r1", "r2"], True)]
    assert _targets(cat, _cmd("UpdateRule", rule_id="r2", segment_id="hr", name="R2", enabled=True,
                              condition_json=RULE)) == [("hr", ["r2"], False), ("sales", ["r1"], True)]
    assert _targets(cat, _cmd("DeleteRule", rule_id="r1")) == [("sales", ["r2"], True)]
    assert _targets(cat, _cmd("DisableSegmentAutomation", segment_id="sales", remove_members=True)) == [
        ("sales", None, True)]
    assert _targets(cat, _cmd("DisableSegmentAutomation", segment_id="sales", remove_members=False)) == []
    assert _targets(cat, _cmd("DeleteSegment", segment_id="sales")) == [("sales", None, True)]
    assert _targets(cat, _cmd("EnableSegmentAutomation", segment_id="off")) == [("off", [], True)]
    assert _targets(cat, _cmd("UpsertSegment", segment_id="sales", name="Renamed")) == []
    assert _targets(cat, _cmd("DeleteRule", rule_id="nope")) == []  # rejected: the worker says why
    # the live catalog is untouched (rules, segments, the active set and its identity)
    assert (dict(cat.rules), dict(cat.segments), cat.active) == before
    assert cat.active is before[2] and [r for r, _ in cat.active["sales"]] == ["r1", "r2"]


def test_a_sequence_is_applied_in_order() -> None:
    cat = _site()
    targets, decisions = plan_impact(cat, [
        _cmd("DeleteRule", rule_id="r1"),
        _cmd("CreateRule", rule_id="r1", segment_id="hr", name="again", enabled=True, condition_json=RULE),
        _cmd("DeleteRule", rule_id="r1"),
        _cmd("DeleteRule", rule_id="r1"),  # gone by now
    ])
    assert [d.status for d in decisions] == ["ACCEPTED", "ACCEPTED", "ACCEPTED", "REJECTED"]
    assert [(t.segment_id, [r for r, _ in t.rules or ()]) for t in targets] == [("hr", []), ("sales", ["r2"])]


def test_evaluator_counts_members_added_removed_and_samples_people() -> None:
    cat = _site()
    targets, _ = plan_impact(cat, [_cmd("DeleteRule", rule_id="r2")])  # sales keeps department == Sales
    ev = Evaluator(targets, now=0, sample=2)
    users = [("a", {"department": "Sales", "city": "Paris", "firstname": "Ann", "lastname": " Lee "}, False, True),
             ("b", {"city": "Paris", "email": "b@x"}, False, True),  # only r2: removed
             ("c", {"city": "Paris"}, False, True),
             ("d", {"city": "Paris"}, False, True),
             ("e", {"department": "Sales"}, False, False),  # matches, not a member (yet): added
             ("f", {}, True, False)]  # a deleted user's tombstone: not evaluated
    for uid, prof, deleted, member in reversed(users):  # the sample is the smallest ids, in any scan order
        ev.add(uid, prof, deleted, lambda seg, m=member: m)
    out = ev.answer()
    assert out["evaluated"] == 5
    seg = out["segments"][0]
    assert (seg["members"], seg["removed"], seg["added"]) == (4, 3, 1)
    assert seg["sample_removed"] == [{"user_id": "b", "name": None, "email": "b@x"},
                                     {"user_id": "c", "name": None, "email": None}]
    assert seg["sample_added"] == [{"user_id": "e", "name": None, "email": None}]
    assert person("a", users[0][1]) == {"user_id": "a", "name": "Ann Lee", "email": None}


def test_merge_sums_workers_and_keeps_the_smallest_ids() -> None:
    def part(ids: list[str], members: int) -> dict:  # type: ignore[type-arg]
        return {"evaluated": members, "segments": [{
            "segment_id": "s", "members": members, "added": 0, "removed": len(ids),
            "sample_added": [], "sample_removed": [{"user_id": i, "name": None, "email": None} for i in ids]}]}

    evaluated, [imp] = merge([part(["u5", "u7"], 10), part(["u1", "u9"], 20)], sample=3)
    assert (evaluated, imp.members, imp.removed) == (30, 30, 4)
    assert [p["user_id"] for p in imp.sample_removed] == ["u1", "u5", "u7"]
