"""End-to-end cross-check, in memory: the processor's pure engine against the oracle.

tests/support/oracle/simulate.py drives processor.membership.engine exactly as
the workers do (commands decided and folded through the catalog registry,
then apply_backfill over every stored user of the site for an accepted
command's backfill plan; events through apply_user_event at increasing
offsets; inputs and user state through the Avro codecs; some events and
backfills processed twice, as after a crash). Behaviour checked: on
generated workloads the folded output equals the oracle's membership with no
conflicting, redundant or missing change, and the engine decides every
command as the generator intended. Mutated engines are caught (the
cross-check has teeth). A known engine gap is pinned as a strict xfail.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from processor.contract.models import Actor, Command, UserEvent
from processor.membership.engine import Outcome
from tests.support.oracle import COMMAND, EVENT, check, expected_membership, fold, generate
from tests.support.oracle import simulate
from tests.support.oracle.simulate import run_engine


def _outcomes(wl, run) -> list[str]:
    out, seen = [], set()
    for c in wl.commands:
        if c.command_id in seen:
            out.append("DUPLICATE")
            continue
        seen.add(c.command_id)
        d = run.decisions[c.command_id]
        out.append("ACCEPTED" if d.accepted else d.code)
    return out


@pytest.mark.parametrize("seed", [101, 202, 303])
def test_engine_matches_oracle_on_3000_step_workloads(seed):
    """~3,000 steps, 2 sites x 60 users, 60 rule changes, 5% crash replays: the checker is ok."""
    wl = generate(seed, 2900, sites=2, users_per_site=60, rule_changes=60)
    assert 2950 <= len(wl) <= 3200
    run = run_engine(wl.steps, wire=True, replay_rate=0.05, seed=seed)
    assert _outcomes(wl, run) == wl.intents
    report = check(run.changes, expected_membership(wl.steps))
    assert report.ok, str(report)
    assert report.expected_members > 50 and report.duplicates > 0
    assert run.statuses["DUPLICATE"] > 0 and run.statuses["REPLAYED"] > 0 and run.backfills > 0


@pytest.mark.parametrize("seed", range(24))
def test_engine_matches_oracle_on_small_varied_workloads(seed):
    """Small, dense workloads (few users, many changes, deletes, suspensions, re-sends) also agree."""
    wl = generate(seed, 250, sites=1 + seed % 3, users_per_site=4 + seed % 9, rule_changes=15 + seed % 30,
                  segments_per_site=1 + seed % 6, duplicate_rate=0.1, delete_rate=0.12, suspend_rate=0.2)
    run = run_engine(wl.steps, replay_rate=0.1, seed=seed)
    report = check(run.changes, expected_membership(wl.steps))
    assert report.ok, str(report)


def test_wire_roundtrip_is_transparent():
    """Running with or without the Avro codecs yields the very same changes."""
    wl = generate(7, 500)
    assert run_engine(wl.steps, wire=True).changes == run_engine(wl.steps, wire=False).changes


# ------------------------------------------------------------------ teeth


def test_mutant_ignoring_remove_all_is_caught(monkeypatch):
    """An engine skipping REMOVE_ALL (disable with remove_members, delete segment) leaves SPURIOUS members."""
    real = simulate.apply_backfill

    def mutant(st, active, segments, cause, now_ms):
        return real(st, active, [s for s in segments if s[1] != "REMOVE_ALL"], cause, now_ms)

    monkeypatch.setattr(simulate, "apply_backfill", mutant)
    wl = generate(2, 1500)
    report = check(run_engine(wl.steps).changes, expected_membership(wl.steps))
    assert report.spurious and not report.missing


def test_mutant_without_backfill_is_caught(monkeypatch):
    """An engine that never backfills misses members added by rule changes."""
    monkeypatch.setattr(simulate, "apply_backfill",
                        lambda st, active, segments, cause, now_ms: Outcome(st, [], "APPLIED", dirty=False))
    wl = generate(4, 1500)
    report = check(run_engine(wl.steps).changes, expected_membership(wl.steps))
    assert report.missing or report.spurious


def test_mutant_with_unstable_replays_is_caught(monkeypatch):
    """A replayed event whose re-emitted change differs (new emitted_at) is a CONFLICT."""
    real = simulate.apply_user_event

    def mutant(st, ev, offset, active, now_ms, use_index=True):
        out = real(st, ev, offset, active, now_ms, use_index=use_index)
        if out.status == "REPLAYED":
            out.changes = [dataclasses.replace(c, emitted_at=c.emitted_at + 1) for c in out.changes]
        return out

    monkeypatch.setattr(simulate, "apply_user_event", mutant)
    wl = generate(5, 1500)
    report = check(run_engine(wl.steps, replay_rate=0.3, seed=5).changes, expected_membership(wl.steps))
    assert report.conflicts and not report.missing


# ------------------------------------------------------------ known gap


def test_retyping_a_field_in_use_is_refused():
    """A datatype change would re-interpret stored values under existing rules (TEXT "abc" becomes
    an unset DATETIME, flipping is_empty) without any re-evaluation, so it is REJECTED FIELD_IN_USE
    while rules use the field; membership stays what the unchanged rules say."""
    admin = Actor("a", ("site_admin",))

    def cmd(i, ptype, **payload):
        return (COMMAND, Command(f"c{i}", "s", 1000 + i, admin, ptype, payload))

    steps = [
        cmd(1, "UpsertProfileField", shortname="code", name="Code", datatype="TEXT", options=[]),
        cmd(2, "UpsertSegment", segment_id="g", name="G"),
        cmd(3, "EnableSegmentAutomation", segment_id="g"),
        cmd(4, "CreateRule", rule_id="r", segment_id="g", name="r", enabled=True,
            condition_json=json.dumps({"field": "profile_field_code", "op": "is_empty"})),
        (EVENT, UserEvent("e1", "USER_CREATED", "s", "u1", 2000, {"profile_field_code": "abc"})),
        cmd(5, "UpsertProfileField", shortname="code", name="Code", datatype="DATETIME", options=[]),
    ]
    assert fold(steps).outcomes == ["ACCEPTED"] * 4 + ["FIELD_IN_USE"]
    assert expected_membership(steps) == {("s", "g"): set()}
    report = check(run_engine(steps).changes, expected_membership(steps))
    assert report.ok, str(report)


@pytest.mark.parametrize("seed", [11, 12])
def test_indexed_matching_is_identical_to_per_segment_evaluation(seed):
    """The rule index (used on the event path) yields exactly the same changes, byte for byte,
    as evaluating every rule of every segment, over a whole generated workload."""
    wl = generate(seed, 2500)
    assert run_engine(wl.steps, use_index=True).changes == run_engine(wl.steps, use_index=False).changes
