"""A backfill of many segments (a batch) matches each user through the rule index instead of
evaluating every segment (processor/membership/engine.py ``Targets``): the outcome must be the
one of the per-segment evaluation, for any profile, membership, mode mix and re-run."""

from __future__ import annotations

import copy
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.catalog.active import ActiveRuleSet
from processor.catalog.commands import RECONCILE, REMOVE_ALL
from processor.membership import engine
from processor.membership.engine import Cause, Targets, apply_backfill
from processor.rules.compiler import compile_condition
from processor.rules.fields import StaticFields
from processor.state.user_state import Fact, UserState

FIELDS = StaticFields()
DEPTS = ["Sales", "HR", "Ops", "Legal"]
CITIES = ["Oslo", "Rome", "Lima"]
SEGMENTS = [f"s{i:02d}" for i in range(24)]


def _rules() -> ActiveRuleSet:
    """18 managed segments (s00..s17) with one or two rules each; s18..s23 are not managed."""
    out = {}
    for i, seg in enumerate(SEGMENTS[:18]):
        conds = [{"field": "department", "op": "equals", "value": DEPTS[i % 4]}]
        if i % 3 == 0:
            conds.append({"field": "city", "op": "equals", "value": CITIES[i % 3]})
        rules = [(f"r{i:02d}a", compile_condition(json.dumps({"all": conds}), FIELDS))]
        if i % 5 == 0:
            rules.append((f"r{i:02d}b", compile_condition(json.dumps(
                {"field": "lastlogin", "op": "within_last", "value": "P30D"}), FIELDS)))
        out[seg] = rules
    return ActiveRuleSet.build(out)


ACTIVE = _rules()
NOW_MS = 1_700_000_000_000
CAUSE = Cause("RULE_CREATED", "batch-1", 1000, {"s03": "SEGMENT_AUTOMATION_ENABLED"})

facts = st.dictionaries(
    st.sampled_from(SEGMENTS),
    st.builds(lambda member, own: Fact(member, f"id-{member}-{own}", "ADDED" if member else "REMOVED",
                                       "USER_CREATED", "batch-1" if own else "ev-1", ("rx",) if member else (),
                                       500, 600),
              st.booleans(), st.booleans()),
    max_size=8)
users = st.builds(
    lambda dept, city, login_days, suspended, deleted, f: (
        {"department": dept, "city": city, "suspended": suspended,
         **({"lastlogin": NOW_MS // 1000 - login_days * 86400} if login_days is not None else {})},
        deleted, f),
    st.sampled_from(DEPTS + ["None"]), st.sampled_from(CITIES), st.none() | st.integers(0, 60),
    st.booleans(), st.booleans(), facts)
plans = st.lists(st.tuples(st.sampled_from(SEGMENTS), st.sampled_from([RECONCILE, REMOVE_ALL])),
                 min_size=engine.INDEX_FROM + 1, max_size=40)


def _state(user: tuple) -> UserState:
    profile, deleted, f = user
    st_ = UserState("site", "u1", profile=dict(profile), deleted=deleted)
    st_.facts = dict(f)
    return st_


@settings(max_examples=400, deadline=None)
@given(users, plans)
def test_the_index_path_gives_the_per_segment_outcome(user: tuple, plan: list) -> None:
    targets = Targets(plan)
    if not targets.indexed:
        return  # fewer distinct segments than the threshold: the per-segment path itself
    by_index = apply_backfill(_state(user), ACTIVE, targets, CAUSE, NOW_MS, 7)
    old = engine.INDEX_FROM
    engine.INDEX_FROM = 10_000
    try:
        each = apply_backfill(_state(user), ACTIVE, Targets(plan), CAUSE, NOW_MS, 7)
    finally:
        engine.INDEX_FROM = old
    assert by_index.changes == each.changes
    assert by_index.state == each.state
    assert (by_index.dirty, by_index.timer) == (each.dirty, each.timer)


def test_a_rerun_through_the_index_re_issues_the_recorded_change_first() -> None:
    plan = [(s, RECONCILE) for s in SEGMENTS[:12]]
    st_ = UserState("site", "u1", profile={"department": "Sales", "city": "Oslo"})
    first = apply_backfill(st_, ACTIVE, Targets(plan), CAUSE, NOW_MS, 3)
    assert first.changes and all(c.cause_id == "batch-1" for c in first.changes)
    again = apply_backfill(copy.deepcopy(st_), ACTIVE, Targets(plan), CAUSE, NOW_MS + 5, 3)
    assert again.changes == first.changes  # the same bytes, not new decisions


def test_each_segment_gets_its_own_cause_kind() -> None:
    plan = [(s, RECONCILE) for s in SEGMENTS[:12]]
    st_ = UserState("site", "u1", profile={"department": "Ops", "city": "Oslo"})
    out = apply_backfill(st_, ACTIVE, Targets(plan), CAUSE, NOW_MS)
    kinds = {c.segment_id: c.cause_kind for c in out.changes}
    assert kinds == {"s02": "RULE_CREATED", "s06": "RULE_CREATED", "s10": "RULE_CREATED"}
    out3 = apply_backfill(UserState("site", "u2", profile={"department": "Legal", "city": "Oslo"}), ACTIVE,
                          Targets(plan), CAUSE, NOW_MS)
    assert {c.segment_id: c.cause_kind for c in out3.changes}["s03"] == "SEGMENT_AUTOMATION_ENABLED"
