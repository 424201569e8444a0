"""Unit tests for processor/catalog/active.py: ActiveRuleSet, one immutable value per catalog change.

A set's answers (its rules, index matches, time leaves) must never change once it exists, even
though ``evolve`` hands its index over to the next set and updates it in place; and the evolved
set must answer exactly like a set built from scratch over the same rules.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.catalog.active import ActiveRuleSet
from processor.membership.decide import matching_rules
from processor.rules.compiler import compile_condition
from processor.rules.fields import StaticFields
from processor.rules.index import SegmentRuleIndex

FIELDS = StaticFields()
NOW = 1_750_000_000
DAY = 86_400
CONDS = [compile_condition(json.dumps(c), FIELDS) for c in [
    {"field": "department", "op": "equals", "value": "Sales"},
    {"field": "department", "op": "in", "value": ["HR", "Sales"]},
    {"field": "city", "op": "not_equals", "value": "Paris"},
    {"field": "email", "op": "ends_with", "value": "@x.org"},
    {"any": [{"field": "country", "op": "equals", "value": "DE"}, {"field": "city", "op": "contains", "value": "lon"}]},
    {"field": "lastlogin", "op": "within_last", "value": "P30D"},
    {"all": [{"field": "department", "op": "equals", "value": "HR"},
             {"field": "timecreated", "op": "more_than_ago", "value": "P7D"}]},
]]
PROFILES = [
    {"department": "sales", "city": "London", "email": "a@x.org", "lastlogin": NOW - DAY},
    {"department": "HR", "city": "Paris", "country": "DE", "timecreated": NOW - 30 * DAY},
    {"city": "Oslo", "lastlogin": NOW - 90 * DAY},
    {},
]
SEGMENTS = ["a", "b", "c"]
RULE_IDS = [f"r{i}" for i in range(6)]

# one step: put a rule (some condition) into a segment, remove it, or unmanage a segment
steps = st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(RULE_IDS), st.sampled_from(SEGMENTS), st.integers(0, len(CONDS) - 1)),
    st.tuples(st.just("drop"), st.sampled_from(RULE_IDS)),
    st.tuples(st.just("unmanage"), st.sampled_from(SEGMENTS)),
), max_size=25)


def answers(rules: ActiveRuleSet) -> list:
    """Everything a reader of the set sees, in comparable form."""
    return [({s: [r for r, _ in rs] for s, rs in sorted(rules.items())},
             rules.match_segments(p, NOW),
             sorted((leaf.field, leaf.op, repr(leaf.value)) for leaf in rules.time_leaves)) for p in PROFILES]


def expected(segments: dict[str, dict[str, int]]) -> list:
    """The same answers computed without the set: every rule evaluated, time leaves listed by hand."""
    out = []
    for p in PROFILES:
        listing = {s: sorted(rs) for s, rs in sorted(segments.items())}
        matched = {}
        for s, rs in segments.items():
            hit = matching_rules([(r, CONDS[i]) for r, i in sorted(rs.items())], p, NOW)
            if hit:
                matched[s] = hit
        leaves = sorted({("lastlogin", "within_last", repr(30 * DAY)) if i == 5 else ("timecreated", "more_than_ago", repr(7 * DAY))
                         for rs in segments.values() for i in rs.values() if i in (5, 6)})
        out.append((listing, matched, leaves))
    return out


@settings(max_examples=200, deadline=None)
@given(steps)
def test_evolved_sets_answer_like_fresh_ones_and_earlier_sets_never_change(script):
    """After every change: the new set (its index handed over and updated in place) answers like
    every rule evaluated, and every earlier set still gives the answers it gave when it was new."""
    segments: dict[str, dict[str, int]] = {s: {} for s in SEGMENTS}  # the model: segment -> rule -> cond
    current = ActiveRuleSet.build({s: () for s in SEGMENTS})
    history = [(current, answers(current))]
    for step in script:
        changes: dict[str, tuple | None] = {}
        if step[0] == "put":
            _, rid, sid, ci = step
            for s, rs in segments.items():
                if rid in rs and s != sid:
                    del rs[rid]
                    changes[s] = tuple((r, CONDS[i]) for r, i in sorted(rs.items()))
            segments.setdefault(sid, {})[rid] = ci
            changes[sid] = tuple((r, CONDS[i]) for r, i in sorted(segments[sid].items()))
        elif step[0] == "drop":
            for s, rs in segments.items():
                if rs.pop(step[1], None) is not None:
                    changes[s] = tuple((r, CONDS[i]) for r, i in sorted(rs.items()))
        else:
            if segments.pop(step[1], None) is not None:
                changes[step[1]] = None
        current = current.evolve(changes)
        got = answers(current)
        assert got == expected(segments)
        history.append((current, got))
    for old, said in history:
        assert answers(old) == said


def test_evolve_moves_the_built_index_and_updates_only_changed_rules(monkeypatch):
    """The next set reuses the built index (no rebuild), and adding one rule indexes one rule."""
    base = ActiveRuleSet.build({"a": [(f"r{i}", CONDS[i % 5]) for i in range(50)]})
    index = base.index
    added = []
    real_add = SegmentRuleIndex.add

    def counting_add(self, rid, sid, cond):
        added.append(rid)
        real_add(self, rid, sid, cond)

    monkeypatch.setattr(SegmentRuleIndex, "add", counting_add)
    grown = base.evolve({"a": tuple(sorted([*base["a"], ("r99", CONDS[0])]))})
    assert grown.index is index and added == ["r99"]
    assert "r99" in grown.match_segments({"department": "Sales"})["a"]
    monkeypatch.undo()
    assert "r99" not in base.match_segments({"department": "Sales"})["a"]  # base rebuilt its own
    assert base.index is not index


def test_a_managed_segment_without_rules_stays_managed():
    """An empty rule list is a managed segment (its members are removed); None unmanages it."""
    rules = ActiveRuleSet.build({"a": [("r", CONDS[0])]})
    empty = rules.evolve({"a": ()})
    assert "a" in empty and empty["a"] == () and empty.match_segments({"department": "Sales"}) == {}
    assert "a" not in empty.evolve({"a": None})
    assert empty == {"a": ()}
