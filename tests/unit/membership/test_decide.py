"""Unit tests for processor/membership/decide.py: when time alone can flip a user's membership."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.catalog.active import ActiveRuleSet
from processor.membership.decide import next_check
from processor.rules.compiler import compile_condition
from processor.rules.fields import StaticFields

FIELDS = StaticFields()
NOW = 1_750_000_000
DAY = 86_400

time_leaf = st.one_of(
    st.builds(lambda f, d: {"field": f, "op": "within_last", "value": f"P{d}D"},
              st.sampled_from(["timecreated", "lastlogin", "lastaccess"]), st.integers(1, 400)),
    st.builds(lambda f, d: {"field": f, "op": "more_than_ago", "value": f"PT{d}H"},
              st.sampled_from(["timecreated", "firstaccess"]), st.integers(1, 2000)),
    st.builds(lambda f: {"field": f, "op": "in_past"}, st.sampled_from(["timecreated", "lastlogin"])),
    st.builds(lambda f: {"field": f, "op": "in_future"}, st.sampled_from(["lastaccess"])),
)
plain_leaf = st.builds(lambda v: {"field": "department", "op": "equals", "value": v}, st.sampled_from(["A", "B"]))
trees = st.recursive(
    st.one_of(time_leaf, plain_leaf),
    lambda kids: st.one_of(st.builds(lambda c: {"all": c}, st.lists(kids, min_size=1, max_size=3)),
                           st.builds(lambda c: {"any": c}, st.lists(kids, min_size=1, max_size=3)),
                           st.builds(lambda c: {"not": c}, kids)),
    max_leaves=6,
)
stamp = st.one_of(st.just(0), st.integers(NOW - 500 * DAY, NOW + 30 * DAY))
profiles = st.fixed_dictionaries({}, optional={f: stamp for f in
                                               ("timecreated", "lastlogin", "lastaccess", "firstaccess")})


def naive_next_check(active, profile, now) -> int:
    """The definition: the earliest transition of any managed rule, walking every rule."""
    found = [t for rules in active.values() for _, c in rules
             if (t := c.next_transition(profile, now)) is not None]
    return min(found) if found else 0


@settings(max_examples=300, deadline=None)
@given(st.lists(trees, min_size=1, max_size=12), st.integers(1, 4), profiles)
def test_distinct_leaves_give_the_same_instant_as_every_rule(conditions, n_segments, profile):
    """Computing the next check over a site's distinct time leaves equals the minimum over every
    rule's own next transition (duplicated rules, nesting and negation included)."""
    active = ActiveRuleSet.build({f"s{i}": tuple((f"r{j}", compile_condition(json.dumps(c), FIELDS))
                                                 for j, c in enumerate(conditions) if j % n_segments == i)
                                  for i in range(n_segments)})
    assert next_check(active, profile, False, NOW) == naive_next_check(active, profile, NOW)


def test_shared_time_conditions_are_walked_once():
    """1,000 rules over 3 distinct time conditions leave 3 leaves to evaluate per user."""
    conds = [{"all": [{"field": "department", "op": "equals", "value": f"D{i}"},
                      {"field": "lastlogin", "op": "within_last", "value": ["P30D", "P90D", "P7D"][i % 3]}]}
             for i in range(1000)]
    active = ActiveRuleSet.build({"s": tuple((f"r{i}", compile_condition(json.dumps(c), FIELDS))
                                             for i, c in enumerate(conds))})
    assert len(active.time_leaves) == 3
    assert active.time_leaves is active.time_leaves  # computed once per rule set
    profile = {"lastlogin": NOW - 10 * DAY}
    got = next_check(active, profile, False, NOW)
    assert got == naive_next_check(active, profile, NOW)
    assert NOW + 20 * DAY <= got <= NOW + 20 * DAY + 1  # the P30D window closes first (P7D already did)


def test_deleted_users_are_never_rescheduled():
    """A deleted user has no timer, whatever the rules say."""
    active = ActiveRuleSet.build({"s": (("r", compile_condition(json.dumps({"field": "timecreated", "op": "within_last",
                                                                         "value": "P1D"}), FIELDS)),)})
    assert next_check(active, {"timecreated": NOW}, True, NOW) == 0
    assert next_check(active, {"timecreated": NOW}, False, NOW) > NOW
