"""``moodle sync`` as a subprocess on the real broker, fed membership changes directly (as the
processor writes them), against the Moodle double: de-duplication, folding, dead letters,
metrics, and a fatal configuration error."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from processor.contract.codec import encode_membership_change
from processor.contract.models import MembershipChange
from tests.support.harness import Cluster
from tests.integration.test_moodle_e2e import Env, moodle_env


@pytest.fixture
def env(cluster: Cluster, site: str, tmp_path: Path) -> Iterator[Env]:
    with moodle_env(cluster, site, tmp_path, grace_s=None) as e:
        yield e


def change(site: str, segment: str, user: str, kind: str, change_id: str | None = None) -> MembershipChange:
    now = int(time.time() * 1000)
    return MembershipChange(change_id or f"c-{uuid.uuid4().hex[:12]}", site, segment, user, kind, "USER_UPDATED",
                            "ev", ("r",), now, now)


def publish(cluster: Cluster, changes: list[MembershipChange]) -> None:
    for c in changes:
        cluster.producer.raw(cluster.settings.topics.membership_changes, f"{c.site_id}:{c.user_id}".encode(),
                             encode_membership_change(c))
    cluster.producer.flush()


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_duplicates_are_skipped_folds_apply_the_last_state_and_unappliable_changes_are_dead_lettered(
        env: Env) -> None:
    m, site = env.moodle, env.site
    sales = m.add_cohort("sales")
    a, b, c, gone = (m.add_user(n) for n in ("a", "b", "c", "gone"))
    m.members[sales.id][c.id] = 0.0
    m.members[sales.id][gone.id] = 0.0
    m.delete_user(gone.id)
    m.members[sales.id][gone.id] = 0.0  # Moodle would have dropped it; the REMOVED must still be isolated
    first = change(site, "sales", str(a.id), "ADDED")
    batch = [
        first, first,  # re-delivered: same change id
        change(site, "sales", str(b.id), "ADDED"), change(site, "sales", str(b.id), "REMOVED"),
        change(site, "sales", str(b.id), "ADDED"),  # folded: only the last state of b is applied
        change(site, "sales", str(c.id), "REMOVED"),
        change(site, "sales", str(gone.id), "REMOVED"),  # a deleted Moodle user: the whole call fails
        change(site, "ghost", str(a.id), "ADDED"),  # no such cohort
        change("another-site", "sales", str(a.id), "ADDED"),
    ]
    publish(env.cluster, batch)
    sync, port = env.start_sync("--batch-size", "10")
    env.wait(lambda: m.member_ids("sales") == {a.id, b.id, gone.id}, "a and b added, c removed")
    env.wait(lambda: metric(port, "moodle_sync_dead_lettered_total") == 2, "two dead letters counted")
    adds = m.calls_to("core_cohort_add_cohort_members")
    assert sum(len(x.params["members"]) for x in adds) == 3  # a, b (once), ghost
    assert metric(port, 'moodle_sync_skipped_total{reason="duplicate"}') == 1
    assert metric(port, 'moodle_sync_skipped_total{reason="superseded"}') == 2
    # a call of several members that Moodle refused as a whole is retried in halves; how the records
    # were grouped into calls depends on how the consumer's fetches returned them
    refused_batches = [x for x in m.calls if x.error and len(x.params.get("members", [])) > 1]
    assert metric(port, 'moodle_sync_retried_total{reason="split"}') == len(refused_batches)
    env.cluster.wait(lambda: {d.error_code for d in env.cluster.out.dead_letters
                              if d.key and d.key.decode().startswith(f"{site}:")}
                     == {"MOODLE_UNKNOWN_COHORT", "MOODLE_USER_NOT_FOUND"}, what="dead letters with reasons")
    dls = [d for d in env.cluster.out.dead_letters if d.key and d.key.decode().startswith(f"{site}:")]
    assert all(d.source_topic == env.cluster.settings.topics.membership_changes and d.value for d in dls)
    assert any("ghost" in d.error for d in dls)

    # The batch was committed: a restarted sync in the same group applies nothing again.
    sync.send_signal(signal.SIGTERM)
    assert sync.wait(30) == 0
    calls = len(m.calls)
    publish(env.cluster, [change(site, "sales", str(c.id), "ADDED")])
    env.start_sync("--batch-size", "10")
    env.wait(lambda: c.id in m.member_ids("sales"), "only the new change applied")
    new_adds = [x for x in m.calls[calls:] if x.function == "core_cohort_add_cohort_members"]
    assert [len(x.params["members"]) for x in new_adds] == [1]


def test_an_invalid_token_stops_the_service_with_the_reason(env: Env) -> None:
    env.vars["MOODLE_TOKEN"] = "not-the-token"
    p = subprocess.run([sys.executable, "-m", "processor", "moodle", "sync", "--port", "0"], env=env.vars,
                       capture_output=True, timeout=60)
    assert p.returncode == 2
    assert b"Manage tokens" in p.stdout + p.stderr
