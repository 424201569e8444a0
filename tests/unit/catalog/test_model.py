"""Unit tests for processor/catalog/model.py: incremental recompilation.

``apply`` tells ``SiteCatalog.recompile`` which rules and segments a command touched; the result
must be exactly what recompiling the whole site gives, after any sequence of commands.
"""

from __future__ import annotations

import copy
import json
import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.catalog.commands import apply, decide
from processor.catalog.model import SiteCatalog
from processor.contract.models import Actor, Command
from processor.rules.index import SegmentRuleIndex

SITE = "s"
ACTOR = Actor("a", ("site_admin", "system"))
CONDS = [
    {"field": "department", "op": "equals", "value": "Sales"},
    {"field": "profile_field_team", "op": "in", "value": ["Red", "Blue"]},
    {"field": "profile_field_team", "op": "equals", "value": "Green"},
    {"all": [{"field": "city", "op": "starts_with", "value": "Lon"},
             {"field": "profile_field_level", "op": "gte", "value": 3}]},
    {"field": "lastlogin", "op": "within_last", "value": "P30D"},
]
PROFILES = [{"department": "sales", "profile_field_team": "Red", "city": "London", "profile_field_level": 4,
             "lastlogin": int(time.time()) - 86400},
            {"department": "HR", "profile_field_team": "Green", "city": "Paris"}, {}]

segment_ids = st.sampled_from(["a", "b", "c"])
rule_ids = st.sampled_from(["r1", "r2", "r3", "r4", "r5"])
rule_cmds = st.one_of(
    st.builds(lambda kind, r, s, c, en: (kind, {"rule_id": r, "segment_id": s, "name": r,
                                                "condition_json": json.dumps(c), "enabled": en}),
              st.sampled_from(["CreateRule", "UpdateRule"]), rule_ids, segment_ids, st.sampled_from(CONDS),
              st.booleans()),
    st.builds(lambda r: ("DeleteRule", {"rule_id": r}), rule_ids),
)
catalog_cmds = st.one_of(
    st.builds(lambda opts: ("UpsertProfileField", {"shortname": "team", "name": "Team", "datatype": "MENU",
                                                   "options": opts}),
              st.sampled_from([["Red", "Blue"], ["Red", "Blue", "Green"], ["Green"]])),
    st.just(("UpsertProfileField", {"shortname": "level", "name": "Level", "datatype": "NUMBER"})),
    st.builds(lambda f: ("DeleteProfileField", {"shortname": f}), st.sampled_from(["team", "level"])),
    st.builds(lambda s: ("UpsertSegment", {"segment_id": s, "name": s.upper()}), segment_ids),
    st.builds(lambda s: ("DeleteSegment", {"segment_id": s}), segment_ids),
    st.builds(lambda s: ("EnableSegmentAutomation", {"segment_id": s}), segment_ids),
    st.builds(lambda s, rm: ("DisableSegmentAutomation", {"segment_id": s, "remove_members": rm}),
              segment_ids, st.booleans()),
)
# rule commands three times as likely as catalog ones: most logs are rule edits
payloads = st.one_of(rule_cmds, rule_cmds, rule_cmds, catalog_cmds)


PRELUDE = [
    ("UpsertProfileField", {"shortname": "team", "name": "Team", "datatype": "MENU",
                            "options": ["Red", "Blue", "Green"]}),
    ("UpsertProfileField", {"shortname": "level", "name": "Level", "datatype": "NUMBER"}),
    *[("UpsertSegment", {"segment_id": s, "name": s}) for s in "abc"],
    *[("EnableSegmentAutomation", {"segment_id": s}) for s in "ab"],
]


def shape(cat: SiteCatalog):
    """Everything recompilation derives, in comparable form."""
    return ({sid: [rid for rid, _ in rules] for sid, rules in cat.active.items()},
            dict(cat.active.index._segment_of), sorted(cat.compiled), cat.rules,
            [cat.active.index.match_segments(p) for p in PROFILES])


def full(cat: SiteCatalog) -> SiteCatalog:
    ref = SiteCatalog(SITE, copy.deepcopy(cat.fields), copy.deepcopy(cat.segments), copy.deepcopy(cat.rules))
    ref.recompile()
    return ref


def weighted_steps(seed: int, n: int = 40) -> list[tuple[str, dict]]:
    """Seeded command mix: rule edits (most logs are those), with catalog changes in between."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            kind = rng.choice(["CreateRule", "UpdateRule"])
            out.append((kind, {"rule_id": rng.choice("12345"), "segment_id": rng.choice("abc"), "name": "n",
                               "condition_json": json.dumps(rng.choice(CONDS)), "enabled": rng.random() < 0.8}))
        elif r < 0.6:
            out.append(("DeleteRule", {"rule_id": rng.choice("12345")}))
        elif r < 0.75:
            out.append((rng.choice(["EnableSegmentAutomation", "EnableSegmentAutomation", "DisableSegmentAutomation"]),
                        {"segment_id": rng.choice("abc"), "remove_members": False}))
        elif r < 0.85:
            out.append(("UpsertSegment", {"segment_id": rng.choice("abc"), "name": "x"}))
        elif r < 0.9:
            out.append(("DeleteSegment", {"segment_id": rng.choice("abc")}))
        elif r < 0.97:
            out.append(("UpsertProfileField", {"shortname": "team", "name": "Team", "datatype": "MENU",
                                               "options": rng.choice([["Red", "Blue"], ["Red", "Blue", "Green"]])}))
        else:
            out.append(("DeleteProfileField", {"shortname": rng.choice(["team", "level"])}))
    return out


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(payloads, max_size=40), st.integers(0, 2**32).map(weighted_steps)))
def test_incremental_recompile_equals_full_recompile(steps):
    """After every accepted command, the incrementally maintained compiled rules, managed-segment
    map and index equal a full recompilation of the same fields, segments and rules."""
    cat = SiteCatalog(SITE)
    accepted = 0
    for i, (kind, payload) in enumerate(PRELUDE + steps):
        cmd = Command(f"c{i}", SITE, 1, ACTOR, kind, payload)
        if decide(cat, cmd, SITE).accepted:
            apply(cat, cmd)
            accepted += 1
        assert shape(cat) == shape(full(cat))
    assert accepted >= len(PRELUDE)


def test_compiled_objects_of_untouched_rules_are_kept():
    """Creating a rule neither recompiles nor re-indexes the others (same compiled objects)."""
    cat = SiteCatalog(SITE)
    for i, (kind, payload) in enumerate([
        ("UpsertSegment", {"segment_id": "a", "name": "A"}), ("EnableSegmentAutomation", {"segment_id": "a"}),
        ("CreateRule", {"rule_id": "r1", "segment_id": "a", "name": "1", "condition_json": json.dumps(CONDS[0]),
                        "enabled": True}),
    ]):
        apply(cat, Command(f"c{i}", SITE, 1, ACTOR, kind, payload))
    before = cat.compiled["r1"]
    index = cat.active.index  # built, as on a worker that has processed an event
    apply(cat, Command("c9", SITE, 1, ACTOR, "CreateRule", {"rule_id": "r2", "segment_id": "a", "name": "2",
                                                           "condition_json": json.dumps(CONDS[4]), "enabled": True}))
    assert cat.compiled["r1"] is before and cat.active.index is index and index.index.get("r1") is before
    assert [rid for rid, _ in cat.active["a"]] == ["r1", "r2"]


def test_folding_a_log_of_n_rules_on_a_live_site_indexes_each_rule_once(monkeypatch):
    """Folding N CreateRules into a site whose index is in use (read after every command, as
    events arrive between commands) compiles and indexes each rule exactly once and never
    rebuilds the index: the fold costs O(N), not O(N^2)."""
    calls = {"add": 0, "rebuild": 0}
    real_add, real_from = SegmentRuleIndex.add, SegmentRuleIndex.from_active.__func__

    def add(self, rid, sid, cond):
        calls["add"] += 1
        real_add(self, rid, sid, cond)

    def from_active(cls, active):
        calls["rebuild"] += 1
        return real_from(cls, active)

    monkeypatch.setattr(SegmentRuleIndex, "add", add)
    monkeypatch.setattr(SegmentRuleIndex, "from_active", classmethod(from_active))
    cat = SiteCatalog(SITE)
    prelude = [*PRELUDE, ("EnableSegmentAutomation", {"segment_id": "c"})]
    n = 300
    rules = [("CreateRule", {"rule_id": f"r{i:03d}", "segment_id": "abc"[i % 3], "name": "n",
                             "condition_json": json.dumps(CONDS[i % len(CONDS)]), "enabled": True})
             for i in range(n)]
    for i, (kind, payload) in enumerate(prelude + rules):
        apply(cat, Command(f"c{i}", SITE, 1, ACTOR, kind, payload))
        cat.active.index  # noqa: B018 - in use, as on a worker processing events
    assert len(cat.active.index) == n
    assert calls == {"add": n, "rebuild": 1}
