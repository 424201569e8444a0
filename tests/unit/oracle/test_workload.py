"""Unit tests for tests/support/oracle/workload.py (the seeded workload generator).

Behaviour: ``generate(seed, ...)`` is a pure function of its arguments (and
the Faker version): same seed => identical steps, ids, timestamps and
profiles, whatever PYTHONHASHSEED; ids derive from the seed. A workload
starts with catalog setup (custom fields of every kind, segments, automation,
initial rules), then user events with rule/automation/catalog changes at
random points; it uses only deterministic operators, keeps re-sent events
inside the processor's de-duplication window, never ends with a frozen
segment, and labels every command with what the processor must answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from processor.catalog.authorize import CATALOG_COMMANDS, RULE_COMMANDS
from processor.rules.operators import REGISTRY
from tests.support.oracle import COMMAND, EVENT, fold, generate
from tests.support.oracle.workload import DUPLICATE_WINDOW

SEEDS = (1, 2, 3, 4, 5, 6)


@pytest.fixture(scope="module")
def workloads():
    return {s: generate(s, 1500, rule_changes=60) for s in SEEDS}


def _leaf_ops(cond) -> list[str]:
    if "field" in cond:
        return [cond["op"]]
    out = [k for k in ("all", "any", "not") if k in cond]
    for k in ("all", "any"):
        for c in cond.get(k, ()):
            out += _leaf_ops(c)
    if "not" in cond:
        out += _leaf_ops(cond["not"])
    return out


def _conditions(wl):
    for c, intent in zip(wl.commands, wl.intents):
        if c.payload_type in ("CreateRule", "UpdateRule") and intent == "ACCEPTED":
            yield c, json.loads(c.payload["condition_json"])


def test_same_seed_same_workload():
    """Two runs with the same seed and arguments produce equal steps, intents and digest."""
    a, b = generate(42, 800), generate(42, 800)
    assert a.steps == b.steps
    assert a.intents == b.intents
    assert a.digest() == b.digest()


def test_different_seed_different_workload():
    """Another seed gives another workload, with ids that cannot collide with the first one's."""
    a, b = generate(42, 300), generate(43, 300)
    assert a.digest() != b.digest()
    ids_a = {c.command_id for c in a.commands} | {e.event_id for e in a.events} | set(a.sites)
    ids_b = {c.command_id for c in b.commands} | {e.event_id for e in b.events} | set(b.sites)
    assert not ids_a & ids_b


def test_deterministic_across_processes_and_hash_seeds():
    """The digest is the same in a fresh interpreter with another PYTHONHASHSEED (no set iteration order)."""
    code = "from tests.support.oracle import generate; print(generate(9, 400, sites=3).digest())"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == generate(9, 400, sites=3).digest()


def test_ids_derive_from_seed_and_prefix():
    """Sites, commands and events carry ``{site_prefix}-{seed}`` ids; command ids repeat only for re-sends."""
    wl = generate(7, 300, sites=3, site_prefix="bench")
    assert wl.sites == ("bench-7-s0", "bench-7-s1", "bench-7-s2")
    assert all(c.command_id.startswith("bench-7-c") for c in wl.commands)
    assert all(e.event_id.startswith("bench-7-e") for e in wl.events)
    assert len(wl.intents) == len(wl.commands)
    ids = Counter(c.command_id for c in wl.commands)
    resent = sum(n - 1 for n in ids.values())
    assert resent == wl.intents.count("DUPLICATE") >= 1


def test_event_count_and_clock():
    """Exactly ``n_events`` user events (re-sends included); timestamps increase (re-sends keep theirs)."""
    wl = generate(3, 1000)
    assert len(wl.events) == 1000
    times, seen = [], set()
    for kind, item in wl.steps:
        ident = (kind, item.command_id if kind == COMMAND else item.event_id)
        if ident in seen:
            continue
        seen.add(ident)
        times.append(item.issued_at if kind == COMMAND else item.occurred_at)
    assert times == sorted(times) and len(set(times)) == len(times)


def test_setup_comes_first(workloads):
    """Before the first user event each site gets fields of every type (MENU with options), segments,
    automation for all but one segment, and at least one rule per managed segment."""
    wl = workloads[1]
    first_event = next(i for i, (k, _) in enumerate(wl.steps) if k == EVENT)
    setup = [c for k, c in wl.steps[:first_event]]
    for site in wl.sites:
        cmds = [c for c in setup if c.site_id == site]
        fields = {c.payload["shortname"]: c.payload for c in cmds if c.payload_type == "UpsertProfileField"}
        types = {f["datatype"] for f in fields.values()}
        assert {"MENU", "TEXT", "CHECKBOX", "NUMBER", "MULTISELECT"} <= types
        assert all(f["options"] for f in fields.values() if f["datatype"] in ("MENU", "MULTISELECT"))
        segments = [c.payload["segment_id"] for c in cmds if c.payload_type == "UpsertSegment"]
        enabled = [c.payload["segment_id"] for c in cmds if c.payload_type == "EnableSegmentAutomation"]
        assert len(enabled) == len(segments) - 1 and "library" not in enabled
        ruled = {c.payload["segment_id"] for c in cmds if c.payload_type == "CreateRule"}
        assert ruled == set(enabled)


def test_actor_roles(workloads):
    """Rule/automation commands come from ("site_admin",), catalog ones from ("system",) or
    ("site_admin",); any other actor is a deliberate FORBIDDEN."""
    for wl in workloads.values():
        for cmd, intent in zip(wl.commands, wl.intents):
            if intent == "FORBIDDEN":
                assert "site_admin" not in cmd.actor.roles
            elif cmd.payload_type in RULE_COMMANDS:
                assert cmd.actor.roles == ("site_admin",)
            else:
                assert cmd.payload_type in CATALOG_COMMANDS
                assert cmd.actor.roles in (("system",), ("site_admin",))


def test_operators_are_mixed_nested_and_deterministic(workloads):
    """Conditions use every operator the brief lists, nest with all/any/not, and never read the clock."""
    ops = Counter(op for wl in workloads.values() for _, cond in _conditions(wl) for op in _leaf_ops(cond))
    wanted = {"equals", "in", "not_in", "contains", "starts_with", "is_empty", "not_equals", "gt", "any_of",
              "is_checked", "all", "any", "not", "before", "after", "lt", "none_of", "is_not_empty"}
    assert wanted <= set(ops)
    assert not [op for op in ops if op in REGISTRY and REGISTRY[op].uses_now]


def test_user_event_kinds(workloads):
    """Events include creations with realistic profiles, patches (some clearing with null),
    deletions, re-creations after a delete, and patches of never-seen users."""
    wl = workloads[2]
    kinds = Counter(e.event_type for e in wl.events)
    assert kinds["USER_CREATED"] and kinds["USER_UPDATED"] and kinds["USER_DELETED"]
    created = [e for e in wl.events if e.event_type == "USER_CREATED"]
    assert all("@" in e.profile["email"] and e.profile["firstname"] for e in created)
    assert any(v is None for e in wl.events if e.event_type == "USER_UPDATED" for v in e.profile.values())
    history: dict[tuple[str, str], list[str]] = {}
    first_is_patch = 0
    for e in wl.events:
        h = history.setdefault((e.site_id, e.user_id), [])
        first_is_patch += not h and e.event_type == "USER_UPDATED"
        h.append(e.event_type)
    assert any("USER_CREATED" in h[h.index("USER_DELETED"):] for h in history.values() if "USER_DELETED" in h)
    assert any(h[-1] == "USER_DELETED" for h in history.values())  # some users stay deleted
    assert first_is_patch  # a patch for a never-seen user becomes the profile


def test_duplicates_are_exact_and_inside_the_window(workloads):
    """A re-sent event equals an earlier event of the same user, among that user's last 10 applied ones."""
    total = 0
    for wl in workloads.values():
        applied: dict[tuple[str, str], list] = {}
        for e in wl.events:
            mine = applied.setdefault((e.site_id, e.user_id), [])
            ids = [x.event_id for x in mine]
            if e.event_id in ids:
                total += 1
                assert e in mine[-DUPLICATE_WINDOW:]
            else:
                mine.append(e)
    assert total > 20


def test_rule_changes_are_interleaved(workloads):
    """Rule, automation and catalog changes happen between user events, of every kind."""
    seen = Counter()
    for wl in workloads.values():
        first = next(i for i, (k, _) in enumerate(wl.steps) if k == EVENT)
        last = max(i for i, (k, _) in enumerate(wl.steps) if k == EVENT)
        for cmd in (c for k, c in wl.steps[first:last] if k == COMMAND):
            t = cmd.payload_type
            if t == "DisableSegmentAutomation":
                t += f"(remove_members={cmd.payload['remove_members']})"
            seen[t] += 1
    for t in ("CreateRule", "UpdateRule", "DeleteRule", "EnableSegmentAutomation", "DeleteProfileField",
              "DeleteSegment", "UpsertSegment", "UpsertProfileField",
              "DisableSegmentAutomation(remove_members=True)",
              "DisableSegmentAutomation(remove_members=False)"):
        assert seen[t], t


def test_intents_match_the_processors_decisions(workloads):
    """Every command is ACCEPTED, REJECTED with the code the generator meant, or a DUPLICATE id:
    the generator's catalog model agrees with processor.catalog.commands.decide."""
    codes = Counter()
    for wl in workloads.values():
        assert fold(wl.steps).outcomes == wl.intents
        codes.update(wl.intents)
    assert codes["ACCEPTED"] > 10 * sum(n for c, n in codes.items() if c not in ("ACCEPTED", "DUPLICATE"))
    rejected = {c for c in codes if c not in ("ACCEPTED", "DUPLICATE")}
    assert {"UNKNOWN_FIELD", "FORBIDDEN", "NOT_FOUND"} & rejected
    assert len(rejected) >= 4


def test_no_frozen_segment_and_no_oracle_problem(workloads):
    """Every disable without remove_members is later followed by an enable or a delete of that segment."""
    for wl in workloads.values():
        frozen: set[tuple[str, str]] = set()
        for cmd, intent in zip(wl.commands, wl.intents):
            if intent != "ACCEPTED":
                continue
            key = (cmd.site_id, cmd.payload.get("segment_id"))
            if cmd.payload_type == "DisableSegmentAutomation" and not cmd.payload["remove_members"]:
                frozen.add(key)
            elif cmd.payload_type in ("EnableSegmentAutomation", "DeleteSegment"):
                frozen.discard(key)
        assert not frozen
        assert fold(wl.steps).problems == []


def test_stats_count_everything():
    """stats() counts steps by payload type, event type (re-sends as DUPLICATE) and intent."""
    wl = generate(11, 400)
    st = wl.stats()
    assert st["steps"] == len(wl) == len(wl.steps)
    assert sum(v for k, v in st.items() if k.startswith("event.")) == 400
    assert sum(v for k, v in st.items() if k.startswith("command.")) == len(wl.commands)
    assert sum(v for k, v in st.items() if k.startswith("intent.")) == len(wl.intents)


def test_knobs():
    """Knobs shape the workload: no structural changes, one site, no re-sent events, zero events."""
    wl = generate(5, 600, sites=1, structural_changes=False, duplicate_rate=0.0)
    assert len(wl.sites) == 1
    types = {c.payload_type for c in wl.commands}
    assert not types & {"DeleteProfileField", "DeleteSegment"}
    assert len({e.event_id for e in wl.events}) == len(wl.events)
    empty = generate(5, 0, rule_changes=3)
    assert not empty.events and fold(empty.steps).problems == []
    with pytest.raises(ValueError):
        generate(1, 10, sites=0)
