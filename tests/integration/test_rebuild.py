"""Ops rebuild: recompute everything from the input topics, in diff and snapshot modes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from processor.contract.codec import decode_membership_change, encode_membership_change
from processor.contract.models import MembershipChange
from processor.rebuild import default_jobs, export_state, run_rebuild
from tests.support.harness import Cluster, fold_membership, make_command, make_event, produce_steps
from tests.support.oracle import COMMAND, EVENT, check, expected_membership, generate

from .conftest import warm_up
from .test_cloudevents import records_with_headers

SITE = "rebuild-site"


@pytest.fixture(scope="module")
def rb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(Path(tmp_path_factory.mktemp("rebuild")), app_id="sa-rebuild")
    try:
        c.start_worker("w")
        warm_up(c)
        yield c
    finally:
        c.close()


def _members(c: Cluster) -> set[str]:
    return fold_membership(c.changes_for(SITE)).get((SITE, "s"), set())


def test_rebuild_reproduces_live_state_and_diff_emits_nothing(rb: Cluster) -> None:
    """Live workload -> stop workers -> rebuild --emit diff: state identical byte for byte
    (sorted JSONL export), zero changes emitted; workers then resume from the rebuilt state."""
    cmds = [make_command(SITE, "UpsertSegment", segment_id="s", name="S"),
            make_command(SITE, "EnableSegmentAutomation", segment_id="s"),
            make_command(SITE, "CreateRule", rule_id="r", segment_id="s", name="r",
                         condition={"any": [{"field": "department", "op": "equals", "value": "Sales"},
                                            {"field": "city", "op": "starts_with", "value": "par"}]})]
    for cmd in cmds:
        rb.producer.command(cmd)
    rb.producer.flush()
    rb.wait_results([c.command_id for c in cmds])
    final: dict[str, dict] = {}
    for i in range(300):
        uid = f"u{i}"
        prof = {"department": ["Sales", "HR", "Ops"][i % 3], "city": ["Paris", "Lyon"][i % 2]}
        rb.producer.user_event(make_event(SITE, uid, **prof))
        final[uid] = dict(prof)
    for i in range(0, 300, 4):
        rb.producer.user_event(make_event(SITE, f"u{i}", "USER_UPDATED", department="HR", city=None))
        final[f"u{i}"].update(department="HR")
        final[f"u{i}"].pop("city")
    for i in range(1, 300, 10):
        rb.producer.user_event(make_event(SITE, f"u{i}", "USER_DELETED"))
        final[f"u{i}"] = {"deleted": True}
    rb.producer.flush()
    want = {u for u, p in final.items() if not p.get("deleted") and
            (p.get("department") == "Sales" or str(p.get("city", "")).lower().startswith("par"))}
    rb.wait(lambda: _members(rb) == want, timeout=90, what="live membership")
    w = rb.workers.pop()
    w.stop()
    live = export_state(rb.settings)
    assert len([line for line in live if SITE in line]) == 300

    report = run_rebuild(rb.settings, "diff")
    assert report.changes == 0, report.as_dict()
    assert report.users >= 300 and report.events >= 300 + 75 + 30
    assert export_state(rb.settings) == live

    # the worker resumes from the rebuilt state: only the new event produces a change
    before = len(rb.changes_for(SITE))
    rb.start_worker("w2")
    warm_up(rb, timeout=120)
    rb.producer.user_event(make_event(SITE, "u2", "USER_UPDATED", department="Sales"))  # u2: Ops/Paris? -> check
    rb.producer.user_event(make_event(SITE, "u3", "USER_UPDATED", department="Sales"))
    # markers: a new Sales user on u2's and u3's partitions, processed after their events
    markers = set(rb.marker_users(SITE, {rb.user_partition(SITE, u) for u in ("u2", "u3")}).values())
    for m in sorted(markers):
        rb.producer.user_event(make_event(SITE, m, department="Sales"))
    rb.producer.flush()
    want2 = set(want) | {"u3"} | ({"u2"} if "u2" not in want else set())
    rb.wait(lambda: _members(rb) == want2 | markers, timeout=60, what="post-rebuild events, then the markers")
    rb.catch_up()
    new = [c for c in rb.changes_for(SITE)[before:] if c.user_id not in markers]
    assert all(c.cause_kind == "USER_UPDATED" for c in new)
    assert len(new) == len(want2 - want)


def test_rebuild_repairs_a_wrong_output_and_snapshot_lists_every_member(rb: Cluster) -> None:
    """If the output topic disagrees with the rules (e.g. after a bug), diff emits exactly the
    repair (cause REBUILD); snapshot then emits an ADDED for every member."""
    members = _members(rb)
    victim = sorted(members)[0]
    w = rb.workers.pop()
    w.stop()
    last = [c for c in rb.changes_for(SITE) if c.user_id == victim][-1]
    bogus = MembershipChange("bogus-1", SITE, "s", victim, "REMOVED", "USER_UPDATED", "bug", (), 1, 1)
    assert last.change == "ADDED"
    rb.producer.raw(rb.settings.topics.membership_changes, f"{SITE}:{victim}".encode(),
                    encode_membership_change(bogus))
    rb.producer.flush()
    report = run_rebuild(rb.settings, "diff", run_id="repair", jobs=1)  # in this process (others: one per core)
    assert report.by_change == {"ADDED": 1}
    rb.wait(lambda: _members(rb) == members, what="repaired")
    fix = rb.changes_for(SITE)[-1]
    assert (fix.user_id, fix.cause_kind, fix.cause_id) == (victim, "REBUILD", "rebuild:repair")
    # the rebuild's records carry the workers' CloudEvents headers (docs/contract.md)
    _, _, h = [r for r in records_with_headers(rb.settings, SITE, len(rb.changes_for(SITE)))
               if decode_membership_change(r[1]).change_id == fix.change_id][0]
    assert (h["ce_id"], h["ce_source"], h["ce_subject"], h["content-type"]) == (
        fix.change_id.encode(), f"/sites/{SITE}/segments/s".encode(), victim.encode(), b"application/avro")

    snap = run_rebuild(rb.settings, "snapshot", run_id="snap")
    total_members = sum(len(v) for v in fold_membership(rb.changes_for(SITE) and rb.poll().changes).values())
    assert snap.by_change.get("ADDED", 0) == total_members
    assert snap.by_change.get("REMOVED", 0) == 0


def test_rebuild_command_reports_json_and_finds_nothing_to_repair(rb: Cluster) -> None:
    """``python -m processor rebuild --emit diff --json --jobs 2`` (what ops run): after the
    snapshot above, the output topic already says everything, so it emits nothing; the report
    says how many processes shared the partitions and how long each phase took."""
    assert not rb.workers
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=rb.settings.bootstrap_servers, APP_ID=rb.settings.app_id,
               LOG_LEVEL="warn")
    out = subprocess.run([sys.executable, "-m", "processor", "rebuild", "--emit", "diff", "--json", "--jobs", "2"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["changes"] == 0 and report["jobs"] == 2
    assert report["users"] >= 300 and report["events"] >= 405
    assert {"read_events", "rebuild_users", "commit_offsets"} <= set(report["phases"])


def test_rebuild_of_a_generated_workload_equals_the_oracle(rb: Cluster) -> None:
    """A generated workload (rule changes, patches, clears, deletes, re-creations, re-sent
    events, invalid commands) whose user events no worker ever processed: ``rebuild --emit
    snapshot``, split over one process per core, publishes exactly the oracle's membership
    (nothing missing, nothing spurious, no redundant transition)."""
    wl = generate(4242, 1500, sites=2, users_per_site=150, rule_changes=25, site_prefix="rebuild-oracle")
    expected = expected_membership(wl.steps)
    commands = [step for step in wl.steps if step[0] == COMMAND]
    events = [step for step in wl.steps if step[0] == EVENT]
    rb.start_worker("w-oracle")  # decides the commands (the catalog log), then stops
    warm_up(rb, timeout=120)
    produce_steps(rb.producer, commands)
    rb.producer.flush()
    rb.wait_results({cmd.command_id for _, cmd in commands}, timeout=120)  # type: ignore[attr-defined]
    rb.workers.pop().stop()
    produce_steps(rb.producer, events)
    rb.producer.flush()

    report = run_rebuild(rb.settings, "snapshot", run_id="oracle")
    assert report.jobs == default_jobs(rb.settings.partitions)
    rb.wait(lambda: check(rb.out.changes, expected, sites=wl.sites).ok, timeout=60, what="rebuild == oracle")
    result = check(rb.out.changes, expected, sites=wl.sites)
    assert result.ok, str(result)
    assert sum(len(m) for m in expected.values()) > 50  # the workload has members: not vacuous


def test_rebuild_refuses_to_commit_once_another_member_joined_its_group(rb: Cluster) -> None:
    """The rebuild commits its offsets through a group member; if anyone else joins the group
    meanwhile (a worker started too early), the group rebalances and the commit is refused with
    an actionable error, leaving the committed offsets as they were. Alone, the same member
    commits (the control)."""
    from confluent_kafka import Consumer, TopicPartition

    from processor.rebuild import GroupMember, RebuildError

    s = rb.settings.with_(app_id=f"sa-rebuild-race-{os.getpid()}")
    topic = s.topics.user_events

    def committed() -> int:
        c = Consumer({"bootstrap.servers": s.bootstrap_servers, "group.id": s.app_id})
        try:
            return c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
        finally:
            c.close()

    first = GroupMember(s, [topic], timeout=60)
    second = None
    try:
        first.commit({topic: {0: 1}})
        assert committed() == 1
        second = GroupMember(s, [topic], timeout=60)
        second.wait_joined()  # the newcomer is in: the group has rebalanced
        deadline = time.monotonic() + 30
        while first.assignments < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        with pytest.raises(RebuildError, match="another member joined"):
            first.commit({topic: {0: 2}})
        assert committed() == 1
    finally:
        first.close()
        if second is not None:
            second.close()
