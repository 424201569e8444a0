"""User events against the real broker and a real worker process."""

from __future__ import annotations

from tests.support.harness import Cluster, fold_membership, make_command, make_event

SALES = {"field": "department", "op": "equals", "value": "Sales"}


def setup_site(cluster: Cluster, site: str, managed: tuple[str, ...] = ("sales",),
               rules: dict[str, tuple[str, dict]] | None = None) -> None:
    cmds = []
    for seg in managed:
        cmds += [make_command(site, "UpsertSegment", segment_id=seg, name=seg),
                 make_command(site, "EnableSegmentAutomation", segment_id=seg)]
    for rid, (seg, cond) in (rules or {"r-sales": ("sales", SALES)}).items():
        cmds.append(make_command(site, "CreateRule", rule_id=rid, segment_id=seg, name=rid, condition=cond))
    for c in cmds:
        cluster.producer.command(c)
    cluster.producer.flush()
    results = cluster.wait_results([c.command_id for c in cmds])
    assert all(r.status == "ACCEPTED" for r in results.values()), results


def send(cluster: Cluster, *events: object) -> None:
    for e in events:
        cluster.producer.user_event(e)  # type: ignore[arg-type]
    cluster.producer.flush()


def test_created_matching_user_is_added_then_removed_when_no_longer_matching(cluster: Cluster, site: str) -> None:
    """USER_CREATED matching a rule -> ADDED; USER_UPDATED that stops matching -> REMOVED."""
    setup_site(cluster, site)
    send(cluster, make_event(site, "alice", department="Sales", city="Paris"))
    cluster.wait(lambda: len(cluster.changes_for(site)) == 1, what="ADDED")
    added = cluster.changes_for(site)[0]
    assert (added.change, added.segment_id, added.user_id) == ("ADDED", "sales", "alice")
    assert added.cause_kind == "USER_CREATED" and added.matched_rule_ids == ("r-sales",)

    send(cluster, make_event(site, "alice", "USER_UPDATED", department="Marketing"))
    cluster.wait(lambda: len(cluster.changes_for(site)) == 2, what="REMOVED")
    removed = cluster.changes_for(site)[1]
    assert (removed.change, removed.cause_kind, removed.user_id) == ("REMOVED", "USER_UPDATED", "alice")
    assert removed.change_id != added.change_id


def test_patch_keeps_untouched_fields(cluster: Cluster, site: str) -> None:
    """A USER_UPDATED patch that omits the rule's field keeps the stored value (no change)."""
    cond = {"all": [SALES, {"field": "city", "op": "equals", "value": "Paris"}]}
    setup_site(cluster, site, rules={"r": ("sales", cond)})
    send(cluster, make_event(site, "bob", department="Sales", city="Lyon"))
    # patch only the city: department must still be remembered as Sales
    send(cluster, make_event(site, "bob", "USER_UPDATED", city="Paris"))
    cluster.wait(lambda: len(cluster.changes_for(site)) == 1, what="ADDED after patch")
    ch = cluster.changes_for(site)[0]
    assert (ch.change, ch.user_id, ch.cause_kind) == ("ADDED", "bob", "USER_UPDATED")
    # null clears the field -> no longer matches
    send(cluster, make_event(site, "bob", "USER_UPDATED", department=None))
    cluster.wait(lambda: len(cluster.changes_for(site)) == 2, what="REMOVED after clearing")
    assert cluster.changes_for(site)[1].change == "REMOVED"


def test_deleted_user_leaves_every_managed_segment(cluster: Cluster, site: str) -> None:
    """USER_DELETED -> REMOVED from all managed segments the user was in."""
    setup_site(cluster, site, managed=("sales", "paris"), rules={
        "r1": ("sales", SALES), "r2": ("paris", {"field": "city", "op": "equals", "value": "Paris"})})
    send(cluster, make_event(site, "carol", department="Sales", city="Paris"))
    cluster.wait(lambda: len(cluster.changes_for(site)) == 2, what="two ADDED")
    send(cluster, make_event(site, "carol", "USER_DELETED"))
    cluster.wait(lambda: len(cluster.changes_for(site)) == 4, what="two REMOVED")
    removed = [c for c in cluster.changes_for(site) if c.change == "REMOVED"]
    assert sorted(c.segment_id for c in removed) == ["paris", "sales"]
    assert {c.cause_kind for c in removed} == {"USER_DELETED"}
    assert fold_membership(cluster.changes_for(site)) == {(site, "sales"): set(), (site, "paris"): set()}


def test_unmanaged_segment_is_never_touched(cluster: Cluster, site: str) -> None:
    """A segment whose automation is disabled (frozen) gets no changes from user events."""
    paris = {"field": "city", "op": "equals", "value": "Paris"}
    setup_site(cluster, site, managed=("sales", "paris"), rules={"r-sales": ("sales", SALES),
                                                                 "r-paris": ("paris", paris)})
    send(cluster, make_event(site, "dan", department="Sales"))
    cluster.wait(lambda: len(cluster.changes_for(site)) == 1, what="ADDED")
    off = make_command(site, "DisableSegmentAutomation", segment_id="sales", remove_members=False)
    cluster.producer.command(off)
    cluster.producer.flush()
    assert cluster.wait_results([off.command_id])[off.command_id].status == "ACCEPTED"
    send(cluster, make_event(site, "dan", "USER_UPDATED", department="HR"),
         make_event(site, "erin", department="Sales"))
    # markers: each user's next event joins the still-managed segment; a user's events are
    # processed and their changes released in order, so once both are out, anything the frozen
    # segment got from the events above is out too
    send(cluster, make_event(site, "dan", "USER_UPDATED", city="Paris"),
         make_event(site, "erin", "USER_UPDATED", city="Paris"))
    cluster.wait(lambda: {c.user_id for c in cluster.changes_for(site) if c.segment_id == "paris"}
                 == {"dan", "erin"}, what="the markers' ADDED to paris")
    cluster.catch_up()
    # the frozen segment keeps dan and does not gain erin
    sales = [(c.change, c.user_id) for c in cluster.changes_for(site) if c.segment_id == "sales"]
    assert sales == [("ADDED", "dan")]


def test_duplicate_event_emits_nothing_new(cluster: Cluster, site: str) -> None:
    """The same event delivered twice produces exactly one change."""
    setup_site(cluster, site)
    ev = make_event(site, "frank", department="Sales")
    send(cluster, ev, ev)
    send(cluster, make_event(site, "frank", "USER_UPDATED", department="HR"))
    cluster.wait(lambda: len(cluster.changes_for(site)) >= 2, what="ADDED and REMOVED")
    assert [c.change for c in cluster.changes_for(site)] == ["ADDED", "REMOVED"]
