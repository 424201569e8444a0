"""Time-relative rules flip membership with no user event (cause TIME_ELAPSED)."""

from __future__ import annotations

import time

from tests.support.harness import Cluster, fold_membership, make_command, make_event

DAY = 86400


def test_user_leaves_new_starters_when_window_ends(cluster: Cluster, site: str) -> None:
    """'created within the last 30 days' holds until exactly day 30 ends, then the user is
    REMOVED by the processor's own timer, with no event, within seconds."""
    cmds = [make_command(site, "UpsertSegment", segment_id="new", name="New starters"),
            make_command(site, "EnableSegmentAutomation", segment_id="new"),
            make_command(site, "CreateRule", rule_id="r", segment_id="new", name="new starters",
                         condition={"field": "timecreated", "op": "within_last", "value": "P30D"})]
    for c in cmds:
        cluster.producer.command(c)
    cluster.producer.flush()
    assert {r.status for r in cluster.wait_results([c.command_id for c in cmds]).values()} == {"ACCEPTED"}
    now = int(time.time())
    ends_at = now + 6  # the 30-day window of this user closes 6 s from now
    cluster.producer.user_event(make_event(site, "newbie", timecreated=ends_at - 30 * DAY))
    cluster.producer.user_event(make_event(site, "veteran", timecreated=now - 400 * DAY))
    cluster.producer.flush()
    cluster.wait(lambda: fold_membership(cluster.changes_for(site)).get((site, "new")) == {"newbie"},
                 what="newbie added")
    cluster.wait(lambda: fold_membership(cluster.changes_for(site)).get((site, "new")) == set(), timeout=45,
                 what="newbie removed by time")
    removed = cluster.changes_for(site)[-1]
    assert (removed.change, removed.cause_kind, removed.user_id) == ("REMOVED", "TIME_ELAPSED", "newbie")
    assert removed.emitted_at // 1000 >= ends_at + 1  # not before the window really ended
    assert removed.emitted_at // 1000 <= ends_at + 30  # and promptly (peers: cron, minutes to 24 h)
