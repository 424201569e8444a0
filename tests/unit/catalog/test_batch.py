"""processor/catalog/batch.py: a batch's operations decided in order on a trial copy (the real
catalog untouched), every error listed with its operation's path, one merged backfill plan."""

from __future__ import annotations

import json

from processor.catalog.batch import check_batch, decide_batch, merge_plans, trial
from processor.catalog.commands import RECONCILE, REMOVE_ALL, BackfillPlan, apply
from processor.catalog.model import SiteCatalog
from processor.contract.models import Actor, Command

ADMIN = Actor("adm", ("site_admin",))


def cmd(ptype: str, **payload: object) -> Command:
    return Command("c1", "s", 1, ADMIN, ptype, dict(payload))


def rule(rid: str, seg: str, dept: str = "Sales") -> dict:
    return {"type": "CreateRule", "payload": {"rule_id": rid, "segment_id": seg, "name": rid, "enabled": True,
                                              "condition_json": json.dumps({"field": "department", "op": "equals",
                                                                            "value": dept})}}


def managed(*segs: str) -> SiteCatalog:
    cat = SiteCatalog("s")
    for seg in segs:
        apply(cat, cmd("UpsertSegment", segment_id=seg, name=seg))
        apply(cat, cmd("EnableSegmentAutomation", segment_id=seg))
    return cat


def test_every_bad_operation_is_listed_with_its_path_and_the_catalog_is_untouched() -> None:
    cat = managed("a")
    _ = cat.active.index  # the real set's index must survive a trial
    index = cat.active._index
    ops = [rule("r1", "a"), rule("r2", "nope"), {"type": "DeleteRule", "payload": {"rule_id": "ghost"}},
           rule("r1", "a", "HR")]
    decisions, plan = check_batch(cat, cmd("Batch", operations=ops))
    assert [(d.status, d.code, d.path) for d in decisions] == [
        ("ACCEPTED", None, None),
        ("REJECTED", "UNKNOWN_SEGMENT", "$.payload.operations[1].segment_id"),
        ("REJECTED", "NOT_FOUND", "$.payload.operations[2].rule_id"),
        ("REJECTED", "DUPLICATE_RULE", "$.payload.operations[3].rule_id"),  # r1 exists after operation 0
    ]
    assert decisions[1].message.startswith("operation 1 (CreateRule r2): ")
    assert cat.rules == {} and "r1" not in cat.compiled and cat.active._index is index
    assert plan == BackfillPlan("RULE_CREATED", (("a", RECONCILE),))
    first = decide_batch(cat, cmd("Batch", operations=ops))
    assert (first.status, first.code) == ("REJECTED", "UNKNOWN_SEGMENT")


def test_a_trial_is_a_copy() -> None:
    cat = managed("a")
    t = trial(cat)
    apply(t, cmd("DeleteSegment", segment_id="a"))
    assert "a" in cat.segments and "a" in cat.active and "a" not in t.segments


def test_plans_merge_into_one_with_each_segments_first_kind() -> None:
    merged = merge_plans([
        BackfillPlan("SEGMENT_AUTOMATION_ENABLED", (("x", RECONCILE),)),
        BackfillPlan("RULE_CREATED", (("x", RECONCILE), ("y", RECONCILE))),
        BackfillPlan("SEGMENT_AUTOMATION_DISABLED", (("y", REMOVE_ALL),)),
        BackfillPlan("RULE_UPDATED", (("z", RECONCILE),), (("z", "RULE_DELETED"),)),
    ])
    assert merged == BackfillPlan("SEGMENT_AUTOMATION_ENABLED",
                                  (("x", RECONCILE), ("y", RECONCILE), ("y", REMOVE_ALL), ("z", RECONCILE)),
                                  (("y", "RULE_CREATED"), ("z", "RULE_DELETED")))
    assert merge_plans([]) is None
    assert BackfillPlan.from_dict(merged.to_dict()) == merged
