"""State survives worker restarts: graceful stop, wiped local state, and kill -9."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest

from tests.support.harness import Cluster, fold_membership, make_command, make_event

from .conftest import warm_up


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(Path(tmp_path_factory.mktemp("restart")), app_id="sa-restart")
    try:
        c.start_worker("r0")
        warm_up(c)
        yield c
    finally:
        c.close()


def _setup(c: Cluster, site: str) -> None:
    cmds = [make_command(site, "UpsertSegment", segment_id="s", name="S"),
            make_command(site, "EnableSegmentAutomation", segment_id="s"),
            make_command(site, "CreateRule", rule_id="r", segment_id="s", name="r",
                         condition={"field": "department", "op": "equals", "value": "Sales"})]
    for cmd in cmds:
        c.producer.command(cmd)
    c.producer.flush()
    assert {r.status for r in c.wait_results([x.command_id for x in cmds]).values()} == {"ACCEPTED"}


def _restart(c: Cluster, wipe: bool, hard: bool = False) -> None:
    old = c.workers.pop()
    old.kill() if hard else old.stop()
    if wipe:
        shutil.rmtree(old.state_dir, ignore_errors=True)
    w = c.start_worker(old.name)
    w.state_dir = old.state_dir
    warm_up(c, timeout=120)


def test_wiped_state_is_recovered_from_the_changelog(solo: Cluster) -> None:
    """After a restart with an empty STATE_DIR the worker still knows every user's
    profile and memberships: updates that stop matching emit REMOVED, nothing else."""
    site = "restart-wipe"
    _setup(solo, site)
    for i in range(50):
        solo.producer.user_event(make_event(site, f"u{i}", department="Sales" if i % 2 == 0 else "HR", city="X"))
    solo.producer.flush()
    want = {f"u{i}" for i in range(0, 50, 2)}
    solo.wait(lambda: fold_membership(solo.changes_for(site)).get((site, "s")) == want, what="initial")
    _restart(solo, wipe=True)
    before = len(solo.changes_for(site))
    for i in range(50):  # patch city only: Sales users stay, no change expected
        solo.producer.user_event(make_event(site, f"u{i}", "USER_UPDATED", city="Y"))
    for i in range(0, 10, 2):  # these leave
        solo.producer.user_event(make_event(site, f"u{i}", "USER_UPDATED", department="HR"))
    # markers: a new Sales user on each of those users' partitions, processed after them
    markers = set(solo.marker_users(site, {solo.user_partition(site, f"u{i}") for i in range(50)}).values())
    for m in sorted(markers):
        solo.producer.user_event(make_event(site, m, department="Sales"))
    solo.producer.flush()
    gone = {f"u{i}" for i in range(0, 10, 2)}
    solo.wait(lambda: fold_membership(solo.changes_for(site)).get((site, "s")) == (want - gone) | markers,
              what="removals, and the markers added")
    solo.catch_up()
    delta = [c for c in solo.changes_for(site)[before:] if c.user_id not in markers]
    assert sorted(c.user_id for c in delta) == sorted(gone)
    assert {c.change for c in delta} == {"REMOVED"}


def test_kill_9_mid_stream_loses_nothing(solo: Cluster) -> None:
    """kill -9 while 3,000 events stream in; after restart the folded output equals the
    expected membership and every duplicate carries an identical change_id."""
    site = "restart-kill"
    _setup(solo, site)
    expected: dict[str, bool] = {}
    events = []
    for i in range(3000):
        uid = f"k{i % 600}"
        sales = (i * 7919) % 3 == 0
        events.append(make_event(site, uid, "USER_UPDATED", department="Sales" if sales else "HR"))
        expected[uid] = sales
    for i, ev in enumerate(events):
        solo.producer.user_event(ev)
        if i == 1200:
            solo.producer.flush()
            time.sleep(0.3)
            solo.workers[-1].kill()
    solo.producer.flush()
    _restart(solo, wipe=False, hard=True) if not solo.workers[-1].alive else None
    want = {u for u, s in expected.items() if s}
    solo.wait(lambda: fold_membership(solo.changes_for(site)).get((site, "s"), set()) == want, timeout=120,
              what="membership after kill -9")
    changes = solo.changes_for(site)
    by_id = Counter(c.change_id for c in changes)
    for cid, n in by_id.items():
        if n > 1:
            copies = {(c.user_id, c.change, c.cause_id, c.emitted_at) for c in changes if c.change_id == cid}
            assert len(copies) == 1, f"duplicate change_id {cid} with different content: {copies}"
    # per user, the de-duplicated changes alternate ADDED/REMOVED (no lost or doubled change)
    seen: set[str] = set()
    last: dict[str, str] = {}
    for c in changes:
        if c.change_id in seen:
            continue
        seen.add(c.change_id)
        assert last.get(c.user_id) != c.change, f"{c.user_id}: two {c.change} in a row"
        last[c.user_id] = c.change


def test_graceful_stop_records_each_partitions_changelog_position(solo: Cluster) -> None:
    """After a graceful stop each partition's RocksDB records the last changelog offset written,
    including writes that emitted no change (they are flushed before every offset commit): that
    is where recovery resumes, so a restart replays only newer records, not the whole log, and
    the restarted worker still knows every profile."""
    from confluent_kafka import Consumer, TopicPartition
    from rocksdict import Options, Rdict

    site = "restart-position"
    _setup(solo, site)
    for i in range(200):
        solo.producer.user_event(make_event(site, f"p{i}", department="Sales" if i % 3 else "HR", city="X"))
    solo.producer.flush()
    want = {f"p{i}" for i in range(200) if i % 3}
    solo.wait(lambda: fold_membership(solo.changes_for(site)).get((site, "s")) == want, what="members")
    for i in range(0, 200, 3):  # profile-only updates: state writes that emit no change
        solo.producer.user_event(make_event(site, f"p{i}", "USER_UPDATED", city="Y"))
    # markers: a new Sales user on each of those users' partitions, processed after the updates
    markers = set(solo.marker_users(site, {solo.user_partition(site, f"p{i}") for i in range(0, 200, 3)}).values())
    for m in sorted(markers):
        solo.producer.user_event(make_event(site, m, department="Sales"))
    solo.producer.flush()
    want |= markers
    solo.wait(lambda: fold_membership(solo.changes_for(site)).get((site, "s")) == want, what="markers added")
    old = solo.workers.pop()
    old.stop()
    s = solo.settings
    reader = Consumer({"bootstrap.servers": s.bootstrap_servers, "group.id": f"probe-{site}"})
    try:
        ends = {p: reader.get_watermark_offsets(TopicPartition(s.changelog_topic, p), timeout=10)[1]
                for p in range(s.partitions)}
    finally:
        reader.close()
    recorded = {}
    for p in range(s.partitions):
        path = old.state_dir / "v1" / "tables" / f"users-{p}.db"
        if path.exists():
            db = Rdict(str(path), Options(raw_mode=True))
            try:
                raw = db.get(b"__faust\0offset__")
            finally:
                db.close()
            recorded[p] = None if raw is None else int(raw)
    written = {p for p, end in ends.items() if end > 0}
    assert written and set(recorded) >= written
    assert {p: recorded[p] for p in written} == {p: ends[p] - 1 for p in written}
    w = solo.start_worker(old.name)
    w.state_dir = old.state_dir
    warm_up(solo, timeout=120)
    solo.producer.user_event(make_event(site, "p0", "USER_UPDATED", department="Sales"))
    solo.producer.flush()
    solo.wait(lambda: fold_membership(solo.changes_for(site)).get((site, "s")) == want | {"p0"},
              what="the restarted worker still knows the profiles")
